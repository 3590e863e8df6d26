"""GRPO (Shao et al., 2024, DeepSeekMath): group-relative policy optimisation with rule-based or plug-in rewards.

The base that reward-driven methods (CLS-RL, DeconfoundLM's policy stage) build on: TRL's GRPOTrainer with the
shared completion log, reward checks and vLLM rollout.
"""

from posttrain.configs import GRPORecipeConfig
from posttrain.methods import Method
from posttrain.methods.families import GRPOFamily
from posttrain.trainers import PosttrainGRPOTrainer

GRPO = GRPOFamily()

METHOD = Method(
    name="grpo",
    family=GRPO,
    config_class=GRPORecipeConfig,
    trainer_class=PosttrainGRPOTrainer,
    description="Group Relative Policy Optimization with rule-based or plug-in rewards.",
)
METHODS = (METHOD,)
