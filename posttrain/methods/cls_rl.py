"""CLS-RL and No-Thinking-CLS-RL: rule-based GRPO for few-shot classification.

The method is GRPO on prompts from the classification data builder (``label_column`` in the recipe; see
:mod:`posttrain.data.classification`). The thinking variant keeps the default rewards, ``cls_format`` plus
``cls_accuracy``; the no-thinking variant sets ``reward_funcs: [cls_equality]``. Everything else is the
shared GRPO trainer, so rollouts, reward checks and logging behave as in any other recipe.
"""

from __future__ import annotations

from posttrain.configs import GRPORecipeConfig
from posttrain.formatting import template_columns
from posttrain.methods import Method
from posttrain.trainers import PosttrainGRPOTrainer


def check_classification_recipe(recipe) -> list[str]:
    """A CLS-RL recipe must build classification prompts and show the candidate list."""
    errors = []
    data = recipe.data
    if not data.label_column:
        errors.append(
            "method cls_rl needs label_column (the dataset column holding each row's class) so that "
            "prompts get their candidate list."
        )
    elif data.prompt_template and "classes" not in template_columns(data.prompt_template):
        errors.append(
            "method cls_rl: prompt_template must show the candidate list, e.g. '{text}\\nClasses: {classes}'."
        )
    return errors


METHOD = Method(
    name="cls_rl",
    kind="grpo",
    config_class=GRPORecipeConfig,
    trainer_class=PosttrainGRPOTrainer,
    description="CLS-RL / No-Thinking-CLS-RL: GRPO on few-shot classification prompts with rule-based rewards.",
    default_rewards=("cls_format", "cls_accuracy"),
    check=check_classification_recipe,
)
