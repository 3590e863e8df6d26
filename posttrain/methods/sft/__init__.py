"""Supervised fine-tuning: the loss is on each prompt's target completion (TRL's SFTTrainer).

The base that target-learning methods (S3FT, ConfTuner, training-time markers) build on: they subclass the
trainer to override ``compute_loss`` or write their targets in data stages.
"""

from posttrain.configs import SFTRecipeConfig
from posttrain.methods import Method
from posttrain.methods.families import SFTFamily
from posttrain.trainers import PosttrainSFTTrainer

SFT = SFTFamily()

METHOD = Method(
    name="sft",
    family=SFT,
    config_class=SFTRecipeConfig,
    trainer_class=PosttrainSFTTrainer,
    description="Supervised fine-tuning on prompt/completion pairs (loss on the completion).",
)
METHODS = (METHOD,)
