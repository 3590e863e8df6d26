"""One reward contract everywhere: the held-out check, `posttrain eval` and `posttrain validate` call a reward as
training does (chat completions for chat prompts, a trainer state, async rewards awaited)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from posttrain.cli import main
from rewards.contract import PROBE_COMPLETIONS, RewardContractError, probe_reward, score_completions
from rewards.registry import load_reward_functions
from tests.test_train_e2e import grpo_config, write

FIXTURES = Path(__file__).parent / "fixtures"
PLUGIN = FIXTURES / "plugin_rewards.py"
CHAT = [{"role": "user", "content": "What is 6 x 7?"}]


def reward(name: str):
    (fn,), _ = load_reward_functions([f"{PLUGIN}:{name}"])
    return fn


def test_chat_prompts_get_chat_completions_and_a_trainer_state():
    scores = score_completions(reward("training_style_reward"), [CHAT, CHAT], ["42", ""], step=3)
    assert scores == [1.0, 0.0]


def test_an_async_reward_is_awaited():
    assert score_completions(reward("async_reward"), ["plain prompt"], ["text"]) == [0.5]


def test_the_probe_finds_a_reward_that_breaks_on_some_answers():
    row = {"prompt": CHAT, "answer": "42"}
    with pytest.raises(RewardContractError, match=r"fails_on_refusals.*(.|\n)*made-up answers"):
        probe_reward(reward("fails_on_refusals"), [row])
    probe_reward(reward("training_style_reward"), [row])  # a sound reward passes every made-up answer
    assert len(PROBE_COMPLETIONS) >= 3


def test_validate_scores_every_reward_before_a_model_loads(tiny_model, offline_cache, tmp_path, caplog):
    config = grpo_config(tiny_model, tmp_path / "out", heldout_metric=None)
    config["reward_funcs"] = ["numeric_answer", f"{PLUGIN}:fails_on_refusals"]
    assert main(["validate", str(write(tmp_path / "bad.yaml", config))]) == 2
    assert "reward 'fails_on_refusals' raised" in caplog.text and "made-up answers" in caplog.text
    assert not (tmp_path / "out").exists()


def test_eval_and_heldout_call_rewards_as_training_does(tiny_model, offline_cache, tmp_path):
    out = tmp_path / "eval"
    command = ["eval", "--model_name_or_path", str(tiny_model), "--dataset_name", "gsm_symbolic"]
    command += [
        "--prompt_template",
        "{question}",
        "--max_samples",
        "2",
        "--max_new_tokens",
        "2",
        "--engine",
        "hf",
    ]
    command += ["--scorers", f"{PLUGIN}:training_style_reward", f"{PLUGIN}:async_reward"]
    assert main([*command, "--output_dir", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mean_reward/async_reward"] == 0.5
    assert summary["mean_reward/training_style_reward"] is not None


@pytest.mark.slow
def test_heldout_examples_carry_prompt_and_gold(tiny_model, offline_cache, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "out"
    config = grpo_config(tiny_model, out, max_steps=1, heldout_metric=f"{PLUGIN}:training_style_reward")
    assert main(["train", str(write(tmp_path / "grpo.yaml", config))]) == 0
    (example, *_) = json.loads((out / "results.json").read_text())["after"]["examples"]
    assert example["prompt"][-1]["role"] == "user" and example["answer"] and "completion" in example
