"""A learned reward: a regression head that predicts an observed outcome from a (prompt, answer) pair.

The reward-model stage of methods that learn their reward from data (DeconfoundLM regresses observational
outcomes with known confounders removed). The saved model is then a reward for GRPO and for evaluation:
``{name: reward_model, kwargs: {path: <output_dir>}}``.
"""

from posttrain.methods import Method

METHOD = Method(
    name="reward_model",
    family="reward_model",
    config_class="posttrain.configs:RewardModelConfig",
    trainer_class="posttrain.trainers:RewardRegressionTrainer",
    description="A regression reward model: predicts each row's outcome from its prompt and answer.",
)
METHODS = (METHOD,)
