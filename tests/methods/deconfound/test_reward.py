"""A fitted text reward saved and named as a reward scores completions as the fitted map does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from posttrain.methods.deconfound.reward import fit_and_save, write_head_dataset
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


def test_embeddings_come_back_in_the_texts_order_whatever_the_batching(tiny_model):
    texts = ["a much longer text than the others, with many more words in it", "hi", "a middling text", "yo"]
    batched = embed_texts(str(tiny_model), texts, batch_size=2)
    alone = np.stack([embed_texts(str(tiny_model), [text])[0] for text in texts])
    assert batched.shape == alone.shape
    np.testing.assert_allclose(batched, alone, rtol=1e-4, atol=1e-5)


def test_a_folder_without_a_reward_or_with_a_damaged_one_is_refused(tmp_path):
    from rewards.text_reward import load_text_reward

    with pytest.raises(ValueError, match="holds no text_reward.json"):
        load_text_reward(tmp_path)
    (tmp_path / MARKER).write_text(
        '{"model": "m", "max_length": 8, "mean": [0, 0], "scale": [1], "weights": [1]}'
    )
    with pytest.raises(ValueError, match="damaged"):
        load_text_reward(tmp_path)


def test_the_head_dataset_holds_the_outcomes_with_the_confounders_fit_removed(tmp_path):
    # Least squares of y on c: slope 9/5, intercept 0.8 (hand-computed), fit 0.8, 2.6, 4.4, 6.2.
    texts = ["a", "b", "c", "d"]
    path = write_head_dataset(
        tmp_path / "head.jsonl", texts, np.array([1.0, 3, 3, 7]), np.array([0.0, 1, 2, 3])
    )
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["text"] for r in rows] == texts
    assert [r["outcome"] for r in rows] == pytest.approx([0.2, 0.4, -1.4, 0.8])
    naive = write_head_dataset(tmp_path / "naive.jsonl", texts, np.array([1.0, 3, 3, 7]), None)
    assert [json.loads(line)["outcome"] for line in naive.read_text().splitlines()] == [1.0, 3.0, 3.0, 7.0]
    with pytest.raises(ValueError, match="one outcome per text"):
        write_head_dataset(tmp_path / "x.jsonl", texts, np.ones(3), None)
    with pytest.raises(ValueError, match="give the confounders too"):
        write_head_dataset(tmp_path / "x.jsonl", texts, np.ones(4), None, instruments=np.ones(4))


@pytest.mark.slow
def test_a_reward_model_learns_the_text_effect_from_the_head_dataset(tiny_model, tmp_path):
    """h as an LM regression head: method reward_model on write_head_dataset's rows learns what the text does."""
    from posttrain.recipe import load_recipe
    from posttrain.train import train
    from rewards.learned import reward_model

    rng = np.random.default_rng(0)
    texts = [("wow! " if i % 2 else "calm. ") + f"note {i}" for i in range(32)]
    confounder = rng.normal(size=32)
    outcomes = np.array([2.0 if "wow" in t else 0.0 for t in texts]) + 3.0 * confounder
    data = write_head_dataset(tmp_path / "head.jsonl", texts, outcomes, confounder)
    config = {
        "method": "reward_model",
        "model_name_or_path": str(tiny_model),
        "dataset_name": str(data),
        "prompt_template": "Write a tweet.",
        "completion_template": "{text}",
        "target_column": "outcome",
        "learning_rate": 1e-3,
        "max_steps": 40,
        "per_device_train_batch_size": 8,
        "save_strategy": "no",
        "output_dir": str(tmp_path / "head"),
        "report_to": "none",
        "use_cpu": True,
        "seed": 0,
    }
    (tmp_path / "head.yaml").write_text(yaml.safe_dump(config))
    train(load_recipe(tmp_path / "head.yaml"))
    prompts = [[{"role": "user", "content": "Write a tweet."}]] * 2
    wow, calm = reward_model(
        [
            [{"role": "assistant", "content": "wow! note 40"}],
            [{"role": "assistant", "content": "calm. note 40"}],
        ],
        prompts,
        path=str(tmp_path / "head"),
    )
    assert wow - calm > 1.0  # the text's own effect is 2
