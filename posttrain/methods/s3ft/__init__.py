"""S3FT ("Selective Self-to-Supervised Fine-Tuning for Generalization in Large Language Models", NAACL 2025
Findings).

The model answers its training prompts itself; where a judge accepts its answer, that answer is the target, else
its answer written with the gold shown as a reference (if accepted), else the gold (the ``targets`` data stage).
Then ordinary SFT on the built set. ``target_rule`` gives the baselines: SFT (always gold), SDFT (always rewrite).
"""

from posttrain.methods import Method

# Named, not imported: listing the methods loads none of the training stack (see posttrain.methods).
METHOD = Method(
    name="s3ft",
    family="sft",
    config_class="posttrain.methods.s3ft.config:S3FTConfig",
    trainer_class="posttrain.trainers:PosttrainSFTTrainer",
    description="S3FT: SFT on the model's own judged-correct answers, its reference-guided rewrites, else the gold "
    "(target_rule sft / sdft for the baselines).",
    stages="posttrain.methods.s3ft.data:STAGES",
    check="posttrain.methods.s3ft.data:check_s3ft_recipe",
)
METHODS = (METHOD,)
