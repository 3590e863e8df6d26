"""ConfTuner's own recipe fields: how the model's answers are made and judged, the confidence scale, and the
weight of the optional language-model loss beside the tokenized Brier loss."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from posttrain.configs import SFTRecipeConfig
from rewards.judges import DEFAULT_JUDGE


@dataclass
class ConfTunerConfig(SFTRecipeConfig):
    """TRL's SFTConfig plus ConfTuner's fields."""

    judge: str = field(
        default=DEFAULT_JUDGE,
        metadata={
            "help": "What marks each of the model's own answers correct (1) or wrong (0): a registered reward that "
            "scores 0 or 1, 'module:function' or 'path/to/file.py:function' (see rewards/judges.py). The default, "
            "qa_contains, looks for the normalised gold answer (column 'answer') or an alias ('aliases') in it."
        },
    )
    answer_max_new_tokens: int = field(
        default=64,
        metadata={
            "help": "Longest answer, in new tokens, the model writes to each training question (greedy)."
        },
    )
    confidence_max_scale: int = field(
        default=100,
        metadata={
            "help": "The finest confidence scale tried: numbers 0..N, token i meaning i/N. The scale used is the "
            "finest N up to this one whose every number is a single token after the cue 'Confidence (0-N):' "
            "(100 where the tokenizer has whole numbers as tokens, 9 for one that splits digits)."
        },
    )
    answer_lm_loss_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the ordinary next-token loss on the model's own answer and the confidence cue, added "
            "to the tokenized Brier loss. 0: the Brier loss alone, as the paper trains; above 0 also teaches the "
            "model to write the cue after its answer."
        },
    )

    def __post_init__(self):
        if self.answer_max_new_tokens < 1:
            raise ValueError(f"answer_max_new_tokens must be at least 1, got {self.answer_max_new_tokens}.")
        if self.confidence_max_scale < 1:
            raise ValueError(f"confidence_max_scale must be at least 1, got {self.confidence_max_scale}.")
        weight = self.answer_lm_loss_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
            raise ValueError(f"answer_lm_loss_weight must be a number, 0 or more; got {weight!r}.")
        super().__post_init__()
