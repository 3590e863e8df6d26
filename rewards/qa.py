"""Short-answer QA rewards: is the gold answer (or one of its aliases) in the model's answer.

Used to label answers correct or not for calibration (ConfTuner) and as a lenient QA accuracy. The answer
text is the completion up to a stated ``Confidence:`` line, so a confidence number never matches a gold.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rewards.contract import completion_text
from rewards.registry import register_reward

# The label of a stated confidence: "Confidence:", "Confidence level/score/rating:", with an optional scale in
# parentheses ("Confidence (0-100):", captured as ``scale``) and Markdown emphasis ("**Confidence:**"). The
# value after it is read by eval.calibration.parse_confidence, which documents the whole grammar.
CONFIDENCE_LABEL = re.compile(
    r"\bconfidence(?:\s+(?:level|score|rating))?(?:\s*\((?P<scale>[^()\n]{0,24})\))?[*_]*\s*:",
    re.IGNORECASE,
)


def normalize_answer(text: str) -> str:
    """Lower case, punctuation to spaces, articles dropped, whitespace collapsed."""
    text = re.sub(r"[^\w\s]", " ", text.lower())
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def answer_part(completion: str) -> str:
    """The completion before its first confidence label (``CONFIDENCE_LABEL``), so that neither the stated
    number nor anything after it is read as part of the answer."""
    match = CONFIDENCE_LABEL.search(completion)
    return completion[: match.start()] if match else completion


@register_reward("qa_contains")
def qa_contains(
    completions: Sequence[Any], answer: Sequence[Any], aliases: Sequence[Any] | None = None, **kwargs: Any
) -> list[float | None]:
    """1.0 if the normalised gold answer, or any alias, occurs as whole words in the answer part, else 0.0.

    Rows without a gold answer score None.
    """
    alias_lists = aliases if aliases is not None else [None] * len(completions)
    scores: list[float | None] = []
    for completion, gold, extra in zip(completions, answer, alias_lists, strict=True):
        golds = [g for g in [gold, *(extra or [])] if g is not None and normalize_answer(str(g))]
        if not golds:
            scores.append(None)
            continue
        text = f" {normalize_answer(answer_part(completion_text(completion)))} "
        scores.append(float(any(f" {normalize_answer(str(g))} " in text for g in golds)))
    return scores
