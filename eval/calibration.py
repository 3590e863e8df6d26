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

from rewards.qa import CONFIDENCE_LABEL

# A number: digits of any script, with a decimal point, comma or Arabic decimal separator (U+066B), or ".85".
_NUMBER = r"(?P<whole>\d+)(?:(?P<separator>[.,\u066b])(?P<decimals>\d+))?|[.\u066b](?P<bare_decimals>\d+)"
_VALUE = re.compile(
    r"[\s*_]*(?:(?P<numerator>\d+)\s*(?:/|\bout\s+of\b)\s*(?P<denominator>\d+)|" + _NUMBER + ")"
    r"(?P<percent>\s*(?:%|\u066a|\bpercent\b))?",
    re.IGNORECASE,
)
# What makes a number ambiguous when it follows it: more of a number ("1e2", "0.8.5", "9/10/11", "9/10%"), a
# range ("80-90%", "80 to 90"), or a scale in words ("7 out of ten", "7 on a scale of 10").
_CONTINUED = re.compile(
    r"[^\W_]|[.,\u066b/^]\d|[%\u066a]|\s*(?:[-\u2013\u2014~]|to\b|or\b)\s*\d"
    r"|\s*(?:out\s+of|on\s+a\s+scale)\b",
    re.IGNORECASE,
)
_SCALE = re.compile(r"\s*0\s*(?:-|\u2013|to)\s*(?P<top>\d+)\s*%?\s*|\s*(?:%|percent)\s*", re.IGNORECASE)


def parse_confidence(text: str) -> float | None:
    """The confidence in [0, 1] stated by the last confidence label in ``text``; None when it cannot be read.

    The grammar (case is ignored, Markdown emphasis such as ``**Confidence:** 85%`` is allowed):

    - label: ``Confidence``, optionally followed by ``level``, ``score`` or ``rating``, optionally by a scale
      in parentheses, then ``:``. Scales: ``(0-N)``, ``(0 to N)`` (N > 0) or ``(%)``, which is ``(0-100)``;
      any other scale, say ``(1-10)``, is refused.
    - value: a fraction ``a/b`` or ``a out of b`` of whole numbers (``9/10`` is 0.9), or a number followed by
      an optional ``%`` (or ``percent``). Digits may be of any script (Arabic-Indic ones included); the
      decimal separator is ``.``, ``,`` or the Arabic decimal separator U+066B, and ``%`` may be U+066A.
    - meaning: a fraction is itself; a number with ``%`` is a percentage; with a scale ``(0-N)``, a bare
      number is out of N; otherwise a decimal number (``0.85``) is a probability and a whole number a
      percentage, except 0 and 1, read as probabilities (``Confidence: 1`` is certainty).

    Refused (None) rather than guessed: no label; a last label not followed by a readable value (an earlier
    label is never used instead); a value outside [0, 1] once read (``150``, ``1.5``, which may mean 1.5%,
    ``85.5`` without ``%``, ``11/10``, ``x/0``); a number that goes on (``1e2``, ``0.8.5``, ``9/10%``); a
    range (``80-90%``, ``80 to 90``); a scale in words (``7 out of ten``, ``7 on a scale of 10``); a comma
    before exactly three digits after a whole part other than 0 (``1,000``: a thousands separator or a
    decimal comma?); a sign (``-5%``).
    """
    labels = list(CONFIDENCE_LABEL.finditer(text))
    if not labels:
        return None
    label = labels[-1]
    top = 1.0 if label["scale"] is None else _scale_top(label["scale"])
    match = _VALUE.match(text, label.end())
    if top is None or match is None or _CONTINUED.match(text, match.end()):
        return None
    if match["denominator"] is not None:
        if match["percent"]:
            return None
        numerator, denominator = float(match["numerator"]), float(match["denominator"])
        value = numerator / denominator if denominator > 0 else math.nan
        return value if 0.0 <= value <= 1.0 else None
    decimals = match["decimals"] or match["bare_decimals"]
    if match["separator"] == "," and len(decimals) == 3 and float(match["whole"]) != 0:
        return None
    value = float(f"{match['whole'] or 0}.{decimals or 0}")
    if match["percent"]:
        value /= 100
    elif label["scale"] is not None:
        value /= top
    elif decimals is None and value > 1:  # a whole number above 1: a percentage
        value /= 100
    return value if 0.0 <= value <= 1.0 else None


def _scale_top(scale: str) -> float | None:
    """The top of a stated scale: N for ``0-N`` or ``0 to N``, 100 for ``%``; None for any other scale."""
    match = _SCALE.fullmatch(scale)
    if match is None:
        return None
    top = float(match["top"]) if match["top"] is not None else 100.0
    return top if 0 < top < math.inf else None


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

    The bins are closed on the left and open on the right, except the last, closed at 1.0 so that a
    confidence of 1.0 falls in it. The edges are exactly the floats ``i / n_bins`` (0.9 for 9 / 10), and a
    confidence is compared with them, not scaled: ``floor(p * n_bins)`` would put the float just below 0.9
    in bin 9, since it times 10 rounds to 9.0. Each bin has ``lo``, ``hi``, ``count``, ``mean_confidence``
    and ``accuracy``; the last two are None for an empty bin.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}.")
    p, y = _as_arrays(conf, correct)
    edges = np.array([i / n_bins for i in range(n_bins + 1)])
    index = np.minimum(np.searchsorted(edges, p, side="right") - 1, n_bins - 1)
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
