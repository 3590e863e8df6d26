"""ConfTuner ("ConfTuner: Training Large Language Models to Express Their Confidence Verbally", Li et al., 2025).

The model answers its training questions itself, a judge marks each answer right or wrong (the ``answers`` data
stage), and SFT with the tokenized Brier loss teaches it to follow its own answer with a calibrated
``Confidence (0-N): c``, N chosen from the tokenizer.
"""

from posttrain.formatting import template_columns
from posttrain.methods import Method
from posttrain.methods.conftuner.config import ConfTunerConfig
from posttrain.methods.conftuner.data import ANSWER_STAGE, LABEL_COLUMN
from posttrain.methods.conftuner.trainer import ConfTunerTrainer
from posttrain.methods.sft import SFT


def check_conftuner_recipe(recipe) -> list[str]:
    """ConfTuner trains on the model's own answers, with packing off, judged by a judge that loads."""
    errors = []
    if recipe.data.completion_template:
        errors.append(
            "method conftuner trains on the model's own answers, which its data stage writes: remove "
            f"completion_template ({recipe.data.completion_template!r})."
        )
    if recipe.data.prompt_template is None:
        errors.append(
            "method conftuner needs prompt_template: the question the model answers, e.g. '{question}'."
        )
    elif not template_columns(recipe.data.prompt_template):
        errors.append("prompt_template reads no column: every question would be the same.")
    if recipe.trainer.packing or recipe.trainer.padding_free:
        errors.append(
            "method conftuner reads the confidence at the end of each sequence: set packing and padding_free to "
            "false."
        )
    try:
        ANSWER_STAGE.reads(recipe)
    except ValueError as err:
        errors.append(f"judge: {err}")
    return errors


METHOD = Method(
    name="conftuner",
    family=SFT,
    config_class=ConfTunerConfig,
    trainer_class=ConfTunerTrainer,
    description="ConfTuner: the model states its confidence after its own answers, trained with the tokenized "
    "Brier loss.",
    stages=(ANSWER_STAGE,),
    keep_columns=(LABEL_COLUMN,),
    check=check_conftuner_recipe,
)
METHODS = (METHOD,)
