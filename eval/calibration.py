"""Calibration of verbal confidence, as ConfTuner ("ConfTuner: Training Large Language Models to Express
Their Confidence Verbally") measures it: ECE over 10 equal-width bins, AUROC of confidence against
correctness, Brier score and the bins of a reliability diagram.

Each sample is a stated confidence p in [0, 1] (read from the completion by ``parse_confidence``) and a
correctness y in {0, 1} from a judge.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

# "Confidence: 85%", "**Confidence level:** 0.85"; the number itself is read by _NUMBER.
_LABEL = re.compile(r"\bconfidence(?:\s+level)?[*_]*\s*:", re.IGNORECASE)
_NUMBER = re.compile(r"[*_\s]*(\d+(?:\.\d*)?|\.\d+)\s*(%)?")


def parse_confidence(text: str) -> float | None:
    """The confidence in [0, 1] stated by the last "Confidence: X" (or "Confidence level: X") in ``text``.

    X may be a probability ("0.85") or a percentage ("85%", "85 %", "85"): a number above 1, or one with a
    percent sign, is divided by 100 and must lie in [0, 100]. None when there is no label, when the last
    label is not followed by a number, or when the number is out of range; an earlier label is never used
    instead of a broken last one.
    """
    labels = list(_LABEL.finditer(text))
    if not labels:
        return None
    match = _NUMBER.match(text, labels[-1].end())
    if match is None:
        return None
    value = float(match.group(1))
    if match.group(2) or value > 1:
        return value / 100 if value <= 100 else None
    return value


def _as_arrays(conf: Sequence[float], correct: Sequence[bool | float]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(conf, dtype=float).reshape(-1)
    y = np.asarray(correct, dtype=float).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"conf and correct differ in length: {p.size} vs {y.size}.")
    if not np.all((p >= 0) & (p <= 1)):
        raise ValueError(
            "Confidences must lie in [0, 1]; drop unparsed (None) ones and divide percentages by 100."
        )
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("Correctness must be 0 or 1 (or a bool); threshold graded scores first.")
    return p, y


def reliability_bins(
    conf: Sequence[float], correct: Sequence[bool | float], n_bins: int = 10
) -> list[dict[str, Any]]:
    """Equal-width bins over [0, 1]: bin i holds confidences in [i / n_bins, (i + 1) / n_bins).

    The last bin is closed, so a confidence of 1.0 falls in it. Each bin has ``lo``, ``hi``, ``count``,
    ``mean_confidence`` and ``accuracy``; the last two are None for an empty bin.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}.")
    p, y = _as_arrays(conf, correct)
    index = np.minimum(np.floor(p * n_bins).astype(int), n_bins - 1)
    bins = []
    for i in range(n_bins):
        members = index == i
        count = int(members.sum())
        bins.append(
            {
                "lo": i / n_bins,
                "hi": (i + 1) / n_bins,
                "count": count,
                "mean_confidence": float(p[members].mean()) if count else None,
                "accuracy": float(y[members].mean()) if count else None,
            }
        )
    return bins


def ece_from_bins(bins: Sequence[dict[str, Any]]) -> float:
    """ECE of ready-made reliability bins: ``sum_b |B| / N * |acc(B) - conf(B)|``; nan when all are empty."""
    total = sum(b["count"] for b in bins)
    if total == 0:
        return float("nan")
    return sum(b["count"] / total * abs(b["accuracy"] - b["mean_confidence"]) for b in bins if b["count"])


def expected_calibration_error(
    conf: Sequence[float], correct: Sequence[bool | float], n_bins: int = 10
) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins (see ``reliability_bins``); nan if empty."""
    return ece_from_bins(reliability_bins(conf, correct, n_bins))


def brier_score(conf: Sequence[float], correct: Sequence[bool | float]) -> float:
    """Mean squared error ``mean((p - y)^2)`` of the confidences; nan if empty."""
    p, y = _as_arrays(conf, correct)
    return float(np.mean((p - y) ** 2)) if p.size else float("nan")


def auroc(conf: Sequence[float], correct: Sequence[bool | float]) -> float:
    """Area under the ROC curve of confidence as a predictor of correctness.

    The Mann-Whitney statistic: the share of (correct, wrong) pairs in which the correct sample has the
    higher confidence, a tie counting 1/2. Ties get their average rank. nan when only one class is present.
    """
    p, y = _as_arrays(conf, correct)
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    # 1-based average rank of each distinct value: the ranks before it plus the middle of its own run.
    below = np.cumsum(counts) - counts
    ranks = (below + (counts + 1) / 2)[inverse]
    u = ranks[y == 1].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def calibration_summary(conf: Sequence[float], correct: Sequence[bool | float]) -> dict[str, float]:
    """ECE (10 bins), Brier score, AUROC, sample count, mean confidence and accuracy in one dict."""
    p, y = _as_arrays(conf, correct)
    return {
        "ece": expected_calibration_error(p, y),
        "brier": brier_score(p, y),
        "auroc": auroc(p, y),
        "n": int(p.size),
        "mean_confidence": float(p.mean()) if p.size else math.nan,
        "accuracy": float(y.mean()) if p.size else math.nan,
    }
