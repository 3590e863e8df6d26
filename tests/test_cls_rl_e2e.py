"""A few training steps of each shipped CLS-RL CPU recipe, on a tiny random model and the real intent data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.recipe import RecipeError, load_recipe
from posttrain.train import train

REPO = Path(__file__).parent.parent
RECIPES = REPO / "recipes" / "cls_rl"
SMALL = ["--max_steps", "2", "--logging_steps", "1", "--save_steps", "2", "--heldout_samples", "4"]
SMALL_GRPO = ["--num_generations", "4", "--per_device_train_batch_size", "8", "--max_completion_length", "8"]


def run(recipe: str, model: Path, out: Path, extra: list[str]) -> dict:
    overrides = ["--model_name_or_path", str(model), "--output_dir", str(out), *SMALL, *extra]
    return train(load_recipe(RECIPES / recipe, overrides))


@pytest.mark.parametrize(
    ("recipe", "rewards"),
    [
        ("nothink_intent_cpu.yaml", ["cls_equality", "cls_contains"]),
        ("think_intent_cpu.yaml", ["cls_format", "cls_accuracy", "cls_tags", "cls_contains"]),
    ],
)
def test_grpo_recipe_trains_on_classification_prompts(recipe, rewards, tiny_model, offline_cache, tmp_path):
    results = run(recipe, tiny_model, tmp_path, SMALL_GRPO)
    logged = results["log_history"][0]
    assert {f"rewards/{name}/mean" for name in rewards} <= set(logged)
    assert "frac_reward_zero_std" in logged
    rows = [json.loads(line) for line in (tmp_path / "completions" / "completions.jsonl").open()]
    assert len(rows) == 2 * 8  # two steps of 8 completions
    intents = {"add to playlist", "book restaurant", "get weather", "play music", "rate book"}
    intents |= {"search creative work", "search screening event"}
    for row in rows:
        assert row["label"] in intents
        assert row["label"] in row["classes"].split(", ")
        assert set(row["rewards"]) == set(rewards)
    assert "after" in results and results["after"]["metric"] == "cls_contains"
    assert (tmp_path / "adapter_model.safetensors").exists()


def test_sft_baseline_trains_on_the_same_prompts(tiny_model, offline_cache, tmp_path):
    results = run("sft_intent_cpu.yaml", tiny_model, tmp_path, ["--num_train_epochs", "1"])
    assert results["train"]["train_loss"] > 0
    assert (tmp_path / "adapter_model.safetensors").exists()


def test_cls_rl_without_a_label_column_is_refused(tmp_path):
    with pytest.raises(RecipeError, match="label_column"):
        load_recipe(RECIPES / "nothink_intent_cpu.yaml", ["--label_column", ""])


def test_cls_rl_prompt_must_show_the_candidates(tmp_path):
    with pytest.raises(RecipeError, match=r"\{classes\}"):
        load_recipe(RECIPES / "nothink_intent_cpu.yaml", ["--prompt_template", "Request: {text}"])
