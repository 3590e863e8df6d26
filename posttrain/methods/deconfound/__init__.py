"""DeconfoundLM: rewards learned from observational outcomes with known confounders removed.

``simulate`` builds semi-synthetic outcomes on real texts with a known effect of the text and a confounder
entangled with other text features; ``estimators`` fits ``Y = h(text) + g(confounders)`` by four variants and keeps
``h``; ``reward`` fits ``h`` on frozen embeddings and saves it as a ``text_reward`` any GRPO recipe can name.
The method ``deconfound`` aligns a model with such a reward by best-of-n SFT (``data``: sample, keep the best by
the reward, fine-tune on it); GRPO recipes name the reward in ``reward_funcs``.
"""

from posttrain.methods import Method

# Named, not imported: listing the methods loads none of the training stack (see posttrain.methods).
METHOD = Method(
    name="deconfound",
    family="sft",
    config_class="posttrain.methods.deconfound.config:DeconfoundConfig",
    trainer_class="posttrain.trainers:PosttrainSFTTrainer",
    description="DeconfoundLM: best-of-n SFT on the completions a learned reward (text_reward) scores highest.",
    stages="posttrain.methods.deconfound.data:STAGES",
    check="posttrain.methods.deconfound.data:check_deconfound_recipe",
)
METHODS = (METHOD,)
