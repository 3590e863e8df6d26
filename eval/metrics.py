"""Sample metrics for prompts answered n times each: pass@k, mean@n and maj@n, and their average over a set.

pass@k is the unbiased estimator of "Evaluating Large Language Models Trained on Code" (Chen et al., 2021):
the chance that at least one of k samples drawn without replacement from the n is correct. Scores come from
the reward functions, so a sample may be unscored (None).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rewards.math import extract_final_number
from rewards.qa import answer_part, normalize_answer


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: ``1 - C(n - c, k) / C(n, k)``.

    The ratio of binomials is taken as the product ``prod_{i = n - c + 1}^{n} (1 - k / i)``, which neither
    overflows nor loses precision for large n.
    """
    if k < 1:
        raise ValueError(f"pass@k needs k >= 1, got k={k}.")
    if k > n:
        raise ValueError(
            f"pass@k needs k <= n, got k={k} with only n={n} samples; draw more samples or lower k."
        )
    if not 0 <= c <= n:
        raise ValueError(f"The number of correct samples must lie in [0, n], got c={c} with n={n}.")
    if c == 0:
        return 0.0
    if n - c < k:
        return 1.0  # every draw of k samples contains a correct one
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def mean_at_k(scores: Sequence[float | None]) -> float:
    """Mean score of the samples; unscored (None) samples are left out, and nan when none is scored."""
    valid = [float(s) for s in scores if s is not None]
    return sum(valid) / len(valid) if valid else float("nan")


def _is_correct(value: bool | float | None, threshold: float) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    return float(value) >= threshold


def vote_answer(text: str, parser: str) -> str | None:
    """The answer a sample votes for in maj@n, normalised as the scorers compare answers; None for no answer.

    ``parser`` is 'text': the completion before its stated confidence (:func:`rewards.qa.answer_part`),
    normalised as ``qa_contains`` normalises (case, punctuation, articles, whitespace: "Paris." votes with
    "the paris"); 'number': the final number as ``numeric_answer`` reads it (:func:`extract_final_number`), as
    a float's text, so "12.50" votes with "12.5"; 'none': no answer, so maj@n is 0.
    """
    if parser == "text":
        return normalize_answer(answer_part(text)) or None
    if parser == "number":
        number = extract_final_number(text)
        return None if number is None else repr(float(number) + 0.0)  # + 0.0: -0.0 votes with 0.0
    if parser == "none":
        return None
    raise ValueError(f"answer parser must be 'text', 'number' or 'none', got {parser!r}.")


def majority_at_k(
    answers: Sequence[str | None], correct: Sequence[bool | float | None], *, threshold: float = 0.5
) -> float:
    """1.0 when the majority answer is correct, else 0.0.

    The majority answer is the most frequent non-None answer; a tie goes to the answer that occurs first.
    Answers are compared exactly as given, so normalise them first (``vote_answer``).
    The score is 1.0 when any sample that gave the majority answer is correct; a ``correct`` entry is a bool,
    or a score that counts as correct when it is ``>= threshold`` (None counts as wrong). With no answer at
    all the score is 0.0.
    """
    if len(answers) != len(correct):
        raise ValueError(f"answers and correct differ in length: {len(answers)} vs {len(correct)}.")
    counts: dict[str, int] = {}
    for answer in answers:
        if answer is not None:
            counts[answer] = counts.get(answer, 0) + 1
    if not counts:
        return 0.0
    # dicts keep insertion order and max() returns the first maximum: ties go to the first occurrence.
    majority = max(counts, key=counts.__getitem__)
    hit = any(a == majority and _is_correct(y, threshold) for a, y in zip(answers, correct, strict=True))
    return 1.0 if hit else 0.0


def sample_metrics(
    scores: Sequence[float | None],
    answers: Sequence[str | None],
    ks: Sequence[int],
    *,
    threshold: float = 0.5,
) -> dict[str, float]:
    """pass@k for each k in ``ks``, mean@n and maj@n for one prompt's n samples.

    A sample counts as correct when its score is ``>= threshold`` (0.5 by default, so a 0/1 reward reads as
    is and a partial-credit reward needs at least half credit); an unscored (None) sample counts as wrong
    for pass@k and maj@n and is left out of mean@n.
    """
    n = len(scores)
    if len(answers) != n:
        raise ValueError(f"scores and answers differ in length: {n} vs {len(answers)}.")
    c = sum(_is_correct(s, threshold) for s in scores)
    metrics = {f"pass@{k}": pass_at_k(n, c, k) for k in ks}
    metrics[f"mean@{n}"] = mean_at_k(scores)
    metrics[f"maj@{n}"] = majority_at_k(answers, scores, threshold=threshold)
    return metrics


def aggregate(per_prompt: list[dict[str, Any]]) -> dict[str, float]:
    """Average each numeric metric over the prompts, keys in order of first appearance.

    A prompt without a metric, or with None or nan for it (say mean@n with every sample unscored), is left
    out of that metric's average. Non-numeric entries (a prompt id) are ignored. ``prompts`` is the number
    of prompts given.
    """
    values: dict[str, list[float]] = {}
    for metrics in per_prompt:
        for key, value in metrics.items():
            if not isinstance(value, int | float):  # None, ids and other labels (bools are ints)
                continue
            values.setdefault(key, [])
            if not math.isnan(value):
                values[key].append(float(value))
    summary = {key: sum(v) / len(v) if v else float("nan") for key, v in values.items()}
    summary["prompts"] = len(per_prompt)
    return summary
