"""A fitted text reward saved and named as a reward scores completions as the fitted map does."""

from __future__ import annotations

import numpy as np
import pytest

from posttrain.methods.deconfound.reward import fit_and_save
from rewards import load_reward_functions
from rewards.text_reward import MARKER, embed_texts


def test_saved_reward_scores_like_the_fit(tiny_model, tmp_path):
    texts = [f"tweet number {i} {'!' * (i % 4)}" for i in range(24)]
    outcomes = np.array([t.count("!") for t in texts], dtype=float)
    fitted = fit_and_save(texts, outcomes, None, "naive", tmp_path / "rw", model=str(tiny_model), alpha=0.1)
    (reward,), _ = load_reward_functions([{"name": "text_reward", "kwargs": {"path": str(tmp_path / "rw")}}])
    completions = ["a calm remark", "wow!!!", "tweet number 3 !!!"]
    scores = reward(completions=completions, prompts=["p"] * 3)
    expected = fitted(embed_texts(str(tiny_model), completions))
    assert scores == pytest.approx(expected.tolist(), rel=1e-5)
    # Trained on exclamation counts, it ranks the texts it was fit on by them.
    train_scores = fitted(embed_texts(str(tiny_model), texts))
    assert np.corrcoef(train_scores, outcomes)[0, 1] > 0.5


def test_a_folder_without_a_reward_or_with_a_damaged_one_is_refused(tmp_path):
    from rewards.text_reward import load_text_reward

    with pytest.raises(ValueError, match="holds no text_reward.json"):
        load_text_reward(tmp_path)
    (tmp_path / MARKER).write_text(
        '{"model": "m", "max_length": 8, "mean": [0, 0], "scale": [1], "weights": [1]}'
    )
    with pytest.raises(ValueError, match="damaged"):
        load_text_reward(tmp_path)
