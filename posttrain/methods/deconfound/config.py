"""DeconfoundLM's best-of-n recipe fields: how many completions the model samples per prompt, how, and the learned
reward that picks the one it is then fine-tuned on."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from posttrain.configs import SFTRecipeConfig


@dataclass
class DeconfoundConfig(SFTRecipeConfig):
    """TRL's SFTConfig plus best-of-n selection by a learned reward."""

    best_of: int = field(
        default=4,
        metadata={
            "help": "Completions the model samples per training prompt; the one the reward scores highest is "
            "the prompt's SFT target."
        },
    )
    selection_reward: dict | str | None = field(
        default=None,
        metadata={
            "help": "The reward that picks the target, a reward spec as in reward_funcs: a registered name or "
            "{name, kwargs} (its JSON text on the command line), e.g. {name: text_reward, kwargs: {path: "
            "outputs/deconfound_bench/rewards/joint}} for a reward saved by posttrain.methods.deconfound.reward."
        },
    )
    sample_max_new_tokens: int = field(
        default=64, metadata={"help": "Longest sampled completion, in new tokens."}
    )
    sample_temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling temperature of the best-of-n candidates (above 0: they must differ)."},
    )

    def __post_init__(self):
        if self.best_of < 2:
            raise ValueError(
                f"best_of must be at least 2 (one completion leaves nothing to choose), got {self.best_of}."
            )
        if self.sample_max_new_tokens < 1:
            raise ValueError(f"sample_max_new_tokens must be at least 1, got {self.sample_max_new_tokens}.")
        if self.sample_temperature <= 0:
            raise ValueError(
                f"sample_temperature must be above 0 (greedy candidates would all be the same), got "
                f"{self.sample_temperature}."
            )
        if isinstance(self.selection_reward, str) and self.selection_reward.lstrip().startswith("{"):
            try:
                self.selection_reward = json.loads(self.selection_reward)
            except json.JSONDecodeError as err:
                raise ValueError(f"selection_reward is not a JSON object: {err}.") from err
        if not self.selection_reward:
            raise ValueError(
                "selection_reward is required: the reward that picks each prompt's target, e.g. "
                "{name: text_reward, kwargs: {path: outputs/deconfound_bench/rewards/joint}}."
            )
        super().__post_init__()
