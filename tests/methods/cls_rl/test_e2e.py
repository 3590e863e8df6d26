"""A few training steps of each shipped CLS-RL CPU recipe, on a tiny random model and the real intent data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.data import load_recipe_splits
from posttrain.recipe import RecipeError, load_recipe
from posttrain.train import train
from tests.conftest import adapter_trained, weights_changed

REPO = Path(__file__).parents[3]
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
def test_grpo_recipe_trains_on_classification_prompts(
    recipe, rewards, tiny_model, offline_cache, tmp_path, monkeypatch
):
    from trl import GRPOTrainer

    rendered: list[str] = []
    tokenize = GRPOTrainer._tokenize_prompts

    def recording(self, prompts):
        ids, *rest = tokenize(self, prompts)
        rendered.extend(self.processing_class.batch_decode(ids))
        return (ids, *rest)

    monkeypatch.setattr(GRPOTrainer, "_tokenize_prompts", recording)
    results = run(recipe, tiny_model, tmp_path, SMALL_GRPO)
    prefix = "<think>" if recipe.startswith("think") else ""
    assert rendered and all(text.endswith("<|im_start|>assistant\n" + prefix) for text in rendered)
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
        if prefix:  # the rewards see the answer with its prefix: the opening tag counts
            assert row["response_prefix"] == prefix and row["rewards"]["cls_tags"] >= 0.25
    assert "after" in results and results["after"]["metric"] == "cls_contains"
    assert (tmp_path / "adapter_model.safetensors").exists()


def test_sft_baseline_trains_on_the_same_prompts(tiny_model, offline_cache, tmp_path):
    run("sft_intent_cpu.yaml", tiny_model, tmp_path, ["--num_train_epochs", "1"])
    assert adapter_trained(tmp_path)


def test_format_warm_start_trains_on_label_free_demonstrations(tiny_model, offline_cache, tmp_path):
    recipe = load_recipe(
        RECIPES / "think_warmstart_intent_cpu.yaml", ["--model_name_or_path", str(tiny_model)]
    )
    splits = load_recipe_splits(recipe.data, recipe.builder, seed=recipe.trainer.seed)
    train_rows = recipe.method.family.format(splits, recipe)["train"]
    raw = splits["train"]
    for row, source in zip(train_rows, raw, strict=True):
        answer = row["completion"][0]["content"]
        assert answer == (
            f"<think> The request asks: {source['text']} </think> <answer> {source['random_class']} </answer>"
        )
    # Random, not the gold: over 28 rows and 7 classes the answer is mostly another class.
    assert sum(s["random_class"] == s["label"] for s in raw) < len(raw) / 2

    results = run("think_warmstart_intent_cpu.yaml", tiny_model, tmp_path, ["--num_train_epochs", "1"])
    assert results["after"]["metric"] == "cls_format"
    # A full model (for the thinking recipe to start from), moved off the one it started from.
    assert weights_changed(tiny_model, tmp_path)


def test_thinking_recipe_without_its_warm_start_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    with pytest.raises(RecipeError, match="cls_rl-think-warmstart-intent-cpu.*train that one first"):
        load_recipe(RECIPES / "think_intent_cpu.yaml")


def test_cls_rl_without_a_label_column_is_refused(tmp_path):
    with pytest.raises(RecipeError, match="label_column"):
        load_recipe(RECIPES / "nothink_intent_cpu.yaml", ["--label_column", ""])


def test_cls_rl_prompt_must_show_the_candidates(tmp_path):
    with pytest.raises(RecipeError, match=r"\{classes\}"):
        load_recipe(RECIPES / "nothink_intent_cpu.yaml", ["--prompt_template", "Request: {text}"])
