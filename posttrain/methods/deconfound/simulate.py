"""DeconfoundLM's semi-synthetic outcomes on real texts, with a known causal effect of the text.

From each real text come interpretable features. A known effect ``f*`` is a fixed combination of one group of
them (exclamation marks, capitals, length); the confounder is driven by another group (links, mentions, hashtags,
numbers) plus noise, so it is entangled with the text without being the effect. The outcome is ``f* + strength *
confounder + noise``. A reward fit naively to the outcome credits the confounder's features more as ``strength``
grows; a deconfounded one should keep tracking ``f*``.

The confounder may be recorded with error (``confounder_noise``): the estimators then see ``observed``, not the
confounder, and removing its least-squares fit removes only part of it. ``instrument`` is a second, independent
record of the same confounder (with the same error): a valid instrument for the first, since their errors are
unrelated.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EFFECT_FEATURES = ("exclamations", "capital_share", "log_words")
CONFOUNDER_FEATURES = ("has_link", "mentions", "hashtags", "digits_share")
_EFFECT_WEIGHTS = np.array([1.0, 1.0, -0.5])
_CONFOUNDER_WEIGHTS = np.array([1.0, 0.5, 0.5, 0.5])


def text_features(texts: Sequence[str]) -> dict[str, np.ndarray]:
    """The interpretable features of each text, by name."""
    rows = []
    for text in texts:
        words = text.split()
        letters = [c for c in text if c.isalpha()]
        rows.append(
            {
                "exclamations": float(text.count("!")),
                "capital_share": sum(c.isupper() for c in letters) / len(letters) if letters else 0.0,
                "log_words": math.log1p(len(words)),
                "has_link": float(bool(re.search(r"https?://", text))),
                "mentions": float(len(re.findall(r"@\w", text))),
                "hashtags": float(len(re.findall(r"#\w", text))),
                "digits_share": sum(c.isdigit() for c in text) / len(text) if text else 0.0,
            }
        )
    return {name: np.array([row[name] for row in rows]) for name in rows[0]} if rows else {}


def _z(values: np.ndarray) -> np.ndarray:
    std = values.std()
    return (values - values.mean()) / (std if std > 0 else 1.0)


@dataclass(frozen=True)
class Simulated:
    effect: np.ndarray  # f*(text), standardised
    confounder: np.ndarray  # the true confounder
    outcome: np.ndarray
    observed: np.ndarray  # the confounder as recorded (with confounder_noise)
    instrument: np.ndarray  # a second, independent record of it


@dataclass(frozen=True)
class Effect:
    """``f*`` as a fixed function of a text, standardised over a reference corpus, so that texts from elsewhere (a
    policy's generations) are scored on the same scale as the corpus the rewards were fit on."""

    means: np.ndarray
    scales: np.ndarray
    mean: float
    scale: float

    @classmethod
    def fit(cls, texts: Sequence[str]) -> Effect:
        if not texts:
            raise ValueError("Effect.fit needs at least one reference text.")
        raw = np.column_stack([text_features(texts)[f] for f in EFFECT_FEATURES])
        scales = raw.std(axis=0)
        scales[scales == 0] = 1.0
        combined = ((raw - raw.mean(axis=0)) / scales) @ _EFFECT_WEIGHTS
        return cls(raw.mean(axis=0), scales, float(combined.mean()), float(combined.std() or 1.0))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        raw = np.column_stack([text_features(texts)[f] for f in EFFECT_FEATURES])
        return (((raw - self.means) / self.scales) @ _EFFECT_WEIGHTS - self.mean) / self.scale


def simulate(
    texts: Sequence[str],
    strength: float,
    *,
    noise: float = 0.5,
    confounder_noise: float = 0.0,
    seed: int = 0,
) -> Simulated:
    """Outcomes for ``texts``: ``f* + strength * confounder + noise``; the confounder is its own features'
    combination plus as much noise again, standardised. It is recorded, twice and independently, with normal
    error of standard deviation ``confounder_noise`` (``observed`` and ``instrument``)."""
    if confounder_noise < 0 or noise < 0:
        raise ValueError(f"noise and confounder_noise must be >= 0, got {noise} and {confounder_noise}.")
    features = text_features(texts)
    rng = np.random.default_rng(seed)
    effect = Effect.fit(texts)(texts)
    driven = _z(np.column_stack([_z(features[f]) for f in CONFOUNDER_FEATURES]) @ _CONFOUNDER_WEIGHTS)
    confounder = _z(driven + rng.normal(size=len(texts)))
    outcome = effect + strength * confounder + noise * rng.normal(size=len(texts))
    # Drawn after the outcome, so that an outcome does not depend on how noisily its confounder is recorded.
    observed = confounder + confounder_noise * rng.normal(size=len(texts))
    instrument = confounder + confounder_noise * rng.normal(size=len(texts))
    return Simulated(effect, confounder, outcome, observed, instrument)
