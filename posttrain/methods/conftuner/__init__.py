"""ConfTuner ("ConfTuner: Training Large Language Models to Express Their Confidence Verbally", Li et al., 2025).

The model answers its training questions itself, a judge marks each answer right or wrong (the ``answers`` data
stage), and SFT with the tokenized Brier loss teaches it to follow its own answer with a calibrated
``Confidence (0-N): c``, N chosen from the tokenizer.
"""

from posttrain.methods import Method

# Named, not imported: listing the methods loads none of the training stack (see posttrain.methods).
METHOD = Method(
    name="conftuner",
    family="sft",
    config_class="posttrain.methods.conftuner.config:ConfTunerConfig",
    trainer_class="posttrain.methods.conftuner.trainer:ConfTunerTrainer",
    description="ConfTuner: the model states its confidence after its own answers, trained with the tokenized "
    "Brier loss.",
    stages="posttrain.methods.conftuner.data:STAGES",
    keep_columns=("correct",),  # posttrain.methods.conftuner.data.LABEL_COLUMN
    check="posttrain.methods.conftuner.data:check_conftuner_recipe",
)
METHODS = (METHOD,)
