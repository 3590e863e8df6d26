"""Supervised fine-tuning: the loss is on each prompt's target completion (TRL's SFTTrainer).

The base that target-learning methods (S3FT, ConfTuner, training-time markers) build on: they subclass the
trainer to override ``compute_loss`` or write their targets in data stages.
"""

from posttrain.methods import Method

METHOD = Method(
    name="sft",
    family="sft",
    config_class="posttrain.configs:SFTRecipeConfig",
    trainer_class="posttrain.trainers:PosttrainSFTTrainer",
    description="Supervised fine-tuning on prompt/completion pairs (loss on the completion).",
)
METHODS = (METHOD,)
