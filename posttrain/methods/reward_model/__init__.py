"""A learned reward: a regression head that predicts an observed outcome from a (prompt, answer) pair.

The reward-model stage of methods that learn their reward from data (DeconfoundLM regresses observational
outcomes with known confounders removed). The saved model is then a reward for GRPO and for evaluation:
``{name: reward_model, kwargs: {path: <output_dir>}}``.
"""

from posttrain.configs import RewardModelConfig
from posttrain.methods import Method
from posttrain.methods.families import RewardModelFamily
from posttrain.trainers import RewardRegressionTrainer

REWARD_MODEL = RewardModelFamily()

METHOD = Method(
    name="reward_model",
    family=REWARD_MODEL,
    config_class=RewardModelConfig,
    trainer_class=RewardRegressionTrainer,
    description="A regression reward model: predicts each row's outcome from its prompt and answer.",
)
METHODS = (METHOD,)
