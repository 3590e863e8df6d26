"""Task accuracy on the ``marker_mixture`` held-out split: each row scored by its own task's rule.

Math rows by their final number (``numeric_answer``), question answering by the gold answer in the answer
(``qa_contains``), classification by naming the gold label and no other of the source's labels (``cls_contains``).
Code rows score None: their unit tests are not in the mixture (evaluate HumanEval with ``code_unit_tests``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from posttrain.methods.markers.data import INTENTS
from rewards.classification import cls_contains
from rewards.math import numeric_answer
from rewards.qa import qa_contains

_LABELS = {"intent_recognition": INTENTS, "amazon_reviews": "great, other"}


def task_accuracy(
    completions: Sequence[Any], gold: Sequence[Any], source: Sequence[Any], task: Sequence[Any], **kwargs: Any
) -> list[float | None]:
    """1.0 if the answer is right by its row's task (see the module), 0.0 if wrong, None for code rows."""
    scores: list[float | None] = []
    for completion, answer, origin, kind in zip(completions, gold, source, task, strict=True):
        if kind == "Math reasoning":
            (score,) = numeric_answer([completion], [answer])
        elif kind == "Question answering":
            (score,) = qa_contains([completion], [answer])
        elif kind == "Classification":
            (score,) = cls_contains([completion], [answer], [_LABELS.get(origin, answer)])
        else:
            score = None
        scores.append(score)
    return scores
