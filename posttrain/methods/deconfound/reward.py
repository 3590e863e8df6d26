"""DeconfoundLM's reward stage in one call: embed the texts with a frozen model, fit ``h`` by a variant
(:mod:`posttrain.methods.deconfound.estimators`) and save it where the ``text_reward`` reward loads it from. Or,
for ``h`` as an LM with a regression head, write the deconfounded outcomes as a dataset the ``reward_model``
method trains on (``write_head_dataset``; docs/deconfound.md shows the recipe)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from posttrain.methods.deconfound.estimators import TextReward, deconfounded_outcomes, fit_text_reward
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


def write_head_dataset(
    path: str | Path,
    texts: Sequence[str],
    outcomes: np.ndarray,
    confounders: np.ndarray | None,
    instruments: np.ndarray | None = None,
) -> Path:
    """Rows ``{text, outcome}`` for the ``reward_model`` method: the outcome with the confounders' fit removed (as
    given when ``confounders`` is None: the naive head), to be learned from the text by a regression head."""
    if len(texts) != len(outcomes):
        raise ValueError(f"one outcome per text: {len(texts)} texts for {len(outcomes)} outcomes.")
    if confounders is None:
        if instruments is not None:
            raise ValueError("instruments stand in for confounders: give the confounders too.")
        targets = np.asarray(outcomes, dtype=np.float64)
    else:
        targets = deconfounded_outcomes(outcomes, confounders, instruments)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w") as sink:
        for text, value in zip(texts, targets, strict=True):
            sink.write(json.dumps({"text": text, "outcome": float(value)}) + "\n")
    return target
