"""GRPO (Shao et al., 2024, DeepSeekMath): group-relative policy optimisation with rule-based or plug-in rewards.

The base that reward-driven methods (CLS-RL, DeconfoundLM's policy stage) build on: TRL's GRPOTrainer with the
shared completion log, reward checks and vLLM rollout.
"""

from posttrain.methods import Method

METHOD = Method(
    name="grpo",
    family="grpo",
    config_class="posttrain.configs:GRPORecipeConfig",
    trainer_class="posttrain.trainers:PosttrainGRPOTrainer",
    description="Group Relative Policy Optimization with rule-based or plug-in rewards.",
)
METHODS = (METHOD,)
