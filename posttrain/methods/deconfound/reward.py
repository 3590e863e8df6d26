"""DeconfoundLM's reward stage in one call: embed the texts with a frozen model, fit ``h`` by a variant
(:mod:`posttrain.methods.deconfound.estimators`) and save it where the ``text_reward`` reward loads it from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from posttrain.methods.deconfound.estimators import TextReward, fit_text_reward
from rewards.text_reward import embed_texts, save_text_reward


def fit_and_save(
    texts: Sequence[str],
    outcomes: np.ndarray,
    confounders: np.ndarray | None,
    variant: str,
    output_dir: str | Path,
    *,
    model: str = "smollm2-135m-instruct",
    max_length: int = 128,
    alpha: float = 1.0,
) -> TextReward:
    """Fit ``h`` on the texts' embeddings and save it to ``output_dir`` (``{name: text_reward, kwargs: {path:
    output_dir}}`` then scores completions with it)."""
    features = embed_texts(model, texts, max_length=max_length)
    reward = fit_text_reward(features, outcomes, confounders, variant, alpha=alpha)
    save_text_reward(
        output_dir, model, max_length, reward.mean, reward.scale, reward.weights, variant=variant, alpha=alpha
    )
    return reward
