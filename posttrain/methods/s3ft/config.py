"""S3FT's own recipe fields: where the gold response comes from, how the model's answers are made and judged,
and which rule picks each row's training target (S3FT, or its baselines SFT and SDFT)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from posttrain.configs import SFTRecipeConfig
from rewards.judges import DEFAULT_JUDGE

#: ``s3ft``: the model's own answer if the judge accepts it, else its answer written with the gold as a reference
#: if accepted, else the gold. ``sft``: always the gold. ``sdft``: always the answer written with the reference.
TARGET_RULES = ("s3ft", "sft", "sdft")

DEFAULT_REFERENCE_PROMPT = (
    "{prompt}\n\nA reference answer: {reference}\n\n"
    "Write your own response to the request above, using the reference answer as guidance."
)


@dataclass
class S3FTConfig(SFTRecipeConfig):
    """TRL's SFTConfig plus S3FT's fields."""

    target_rule: str = field(
        default="s3ft",
        metadata={
            "help": "Which target each row trains on. 's3ft': the model's own answer when the judge accepts it, "
            "else its answer written with the gold shown as a reference when the judge accepts that, else the "
            "gold. 'sft': always the gold (the SFT baseline). 'sdft': always the answer written with the reference "
            "(the SDFT baseline)."
        },
    )
    gold_template: str = field(
        default="",
        metadata={
            "help": "The gold response, a format string over the row's columns, e.g. '{answer}' or '{solution}'. "
            "It is the SFT target, the reference the model is shown, and the fallback of S3FT."
        },
    )
    judge: str = field(
        default=DEFAULT_JUDGE,
        metadata={
            "help": "What accepts or rejects an answer: a registered reward that scores 0 or 1 (numeric_answer for "
            "math, code_unit_tests for code, qa_contains for short answers), 'module:function' or "
            "'path/to/file.py:function' (see rewards/judges.py); rewards.llm_judge:llm_judge for free-form "
            "answers."
        },
    )
    judge_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Keyword arguments bound to the judge (a mapping, or its JSON text), e.g. for the LLM judge "
            "{model: smollm2-135m-instruct, accept_pattern: '^\\\\s*yes'}."
        },
    )
    answer_max_new_tokens: int = field(
        default=128,
        metadata={
            "help": "Longest answer, in new tokens, the model writes to a prompt in the data stage (greedy)."
        },
    )
    reference_prompt: str = field(
        default=DEFAULT_REFERENCE_PROMPT,
        metadata={
            "help": "The request with the gold shown as a reference: a format string with {prompt} (the task "
            "prompt's text) and {reference} (the gold response)."
        },
    )

    def __post_init__(self):
        if self.target_rule not in TARGET_RULES:
            raise ValueError(
                f"target_rule must be one of {', '.join(TARGET_RULES)}; got {self.target_rule!r}."
            )
        if self.answer_max_new_tokens < 1:
            raise ValueError(f"answer_max_new_tokens must be at least 1, got {self.answer_max_new_tokens}.")
        missing = [name for name in ("{prompt}", "{reference}") if name not in self.reference_prompt]
        if missing:
            raise ValueError(
                f"reference_prompt must contain {' and '.join(missing)}; got {self.reference_prompt!r}."
            )
        if isinstance(self.judge_kwargs, str):
            try:
                self.judge_kwargs = json.loads(self.judge_kwargs)
            except json.JSONDecodeError as err:
                raise ValueError(f"judge_kwargs is not a JSON object: {err}.") from err
        if self.judge_kwargs is not None and not isinstance(self.judge_kwargs, dict):
            raise ValueError(
                f"judge_kwargs must be a mapping of keyword arguments, got {self.judge_kwargs!r}."
            )
        super().__post_init__()
