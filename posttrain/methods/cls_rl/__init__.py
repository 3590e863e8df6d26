"""CLS-RL and No-Thinking-CLS-RL (Li et al., 2025): rule-based GRPO for few-shot classification.

GRPO on few-shot classification prompts built by this package's ``classification`` data builder (a shuffled
candidate list per prompt, k shots per class). The thinking variant keeps the default rewards, ``cls_format``
plus ``cls_accuracy``; the no-thinking variant sets ``reward_funcs: [cls_equality]``.
"""

from posttrain.data import DataBuilder, register_data_builder
from posttrain.methods import Method
from posttrain.methods.cls_rl.config import ClassificationArguments
from posttrain.methods.cls_rl.data import build_classification
from posttrain.templates import template_columns

CLASSIFICATION = register_data_builder(
    DataBuilder(
        name="classification",
        args_class=ClassificationArguments,
        build=build_classification,
        description="Few-shot classification prompts: k shots per class, a shuffled candidate list with the gold.",
    )
)


def check_classification_recipe(recipe) -> list[str]:
    """A CLS-RL recipe must build classification prompts and show the candidate list."""
    errors = []
    if recipe.data.data_builder != "classification":
        errors.append(
            "method cls_rl reads classification prompts: remove data_builder or set it to classification."
        )
    elif not recipe.builder.label_column:
        errors.append(
            "method cls_rl needs label_column (the dataset column holding each row's class) so that "
            "prompts get their candidate list."
        )
    elif recipe.data.prompt_template and "classes" not in template_columns(recipe.data.prompt_template):
        errors.append(
            "method cls_rl: prompt_template must show the candidate list, e.g. '{text}\\nClasses: {classes}'."
        )
    return errors


METHOD = Method(
    name="cls_rl",
    family="grpo",
    config_class="posttrain.configs:GRPORecipeConfig",
    trainer_class="posttrain.trainers:PosttrainGRPOTrainer",
    description="CLS-RL / No-Thinking-CLS-RL: GRPO on few-shot classification prompts with rule-based rewards.",
    default_rewards=("cls_format", "cls_accuracy"),
    data_builder="classification",
    check=check_classification_recipe,
)
METHODS = (METHOD,)
