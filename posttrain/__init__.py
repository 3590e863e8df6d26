"""posttrain: recipes for fine-tuning and RL post-training of LLMs on TRL, PEFT, Accelerate, DeepSpeed and
vLLM."""

from posttrain.logs import silence_dependency_noise

# Once per process, before any of the training stack loads: see posttrain.logs for each message and why.
silence_dependency_noise()

__version__ = "0.1.0"
