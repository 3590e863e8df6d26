"""Which checkpoint a run resumes from: the newest complete one, never another run's, never a damaged file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from posttrain.checkpoints import (
    RUN_FILE,
    CheckpointError,
    check_run_identity,
    record_run,
    resolve_checkpoint,
    run_identity,
    verify_checkpoint,
)
from posttrain.recipe import load_recipe
from tests.test_recipe import GRPO_BASE

GRPO = {**GRPO_BASE, "beta": 0.0, "resume_from_checkpoint": "auto"}


class _Args:
    def __init__(self, output_dir, resume):
        self.output_dir = str(output_dir)
        self.resume_from_checkpoint = resume


def fake_checkpoint(path: Path, step: int, *, weights: bool = True, state: str | None = None) -> Path:
    """A checkpoint with real file formats: safetensors weights, torch-pickled optimizer, trainer state."""
    path.mkdir(parents=True)
    if weights:
        save_file({"w": torch.arange(64, dtype=torch.float32).reshape(8, 8)}, str(path / "model.safetensors"))
    torch.save({"state": {0: torch.ones(8)}}, path / "optimizer.pt")
    (path / "trainer_state.json").write_text(
        state if state is not None else json.dumps({"global_step": step})
    )
    return path


def truncate(path: Path, keep: int) -> None:
    with path.open("r+b") as f:
        f.truncate(keep)


def recipe_at(tmp_path: Path, output_dir: Path, **changes):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**GRPO, "output_dir": str(output_dir), **changes}))
    return load_recipe(path)


def test_a_complete_checkpoint_passes_and_gives_its_step(tmp_path):
    assert verify_checkpoint(fake_checkpoint(tmp_path / "checkpoint-7", 7)) == 7


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda c: (c / "trainer_state.json").unlink(), "no trainer_state.json"),
        (lambda c: (c / "trainer_state.json").write_text('{"global_st'), "trainer_state.json is corrupt"),
        (lambda c: (c / "model.safetensors").unlink(), "no model or adapter weights"),
        (lambda c: truncate(c / "model.safetensors", 200), r"model\.safetensors is truncated"),
        (lambda c: truncate(c / "model.safetensors", 4), r"model\.safetensors is truncated"),
        (lambda c: truncate(c / "optimizer.pt", 300), r"optimizer\.pt is truncated or damaged"),
        (lambda c: (c / "optimizer.pt").write_bytes(b""), r"optimizer\.pt is empty"),
    ],
    ids=[
        "no-state",
        "torn-state",
        "no-weights",
        "short-weights",
        "no-header",
        "short-optimizer",
        "empty-optimizer",
    ],
)
def test_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path, damage, message):
    checkpoint = fake_checkpoint(tmp_path / "checkpoint-3", 3)
    damage(checkpoint)
    with pytest.raises(CheckpointError, match=message):
        verify_checkpoint(checkpoint)
    with pytest.raises(CheckpointError, match="earlier checkpoint"):
        resolve_checkpoint(_Args(tmp_path, str(checkpoint)))
    assert checkpoint.exists()  # nothing is deleted


def test_auto_picks_the_newest_complete_checkpoint(tmp_path, caplog):
    fake_checkpoint(tmp_path / "checkpoint-5", 5)
    fake_checkpoint(tmp_path / "checkpoint-10", 10)
    assert resolve_checkpoint(_Args(tmp_path, "auto")).endswith("checkpoint-10")
    # A kill during the save of checkpoint-15 left it without its trainer state (the trainer writes it last).
    half = fake_checkpoint(tmp_path / "checkpoint-15", 15)
    (half / "trainer_state.json").unlink()
    truncate(half / "optimizer.pt", 100)
    assert resolve_checkpoint(_Args(tmp_path, "auto")).endswith("checkpoint-10")
    assert "Skipping checkpoint-15" in caplog.text and half.exists()
    assert resolve_checkpoint(_Args(tmp_path / "fresh", "auto")) is None


def test_auto_refuses_when_no_checkpoint_is_complete(tmp_path):
    truncate(fake_checkpoint(tmp_path / "checkpoint-5", 5) / "model.safetensors", 100)
    with pytest.raises(CheckpointError, match="No checkpoint .* is complete"):
        resolve_checkpoint(_Args(tmp_path, "auto"))


def test_existing_checkpoints_are_never_silently_overwritten(tmp_path):
    fake_checkpoint(tmp_path / "checkpoint-5", 5)
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        resolve_checkpoint(_Args(tmp_path, None))


def test_a_run_is_recorded_and_the_same_recipe_resumes(tmp_path, offline_cache):
    out = tmp_path / "out"
    recipe = recipe_at(tmp_path, out)
    assert resolve_checkpoint(recipe.trainer, recipe) is None
    assert not out.exists()  # checking writes nothing
    record_run(recipe)
    recorded = json.loads((out / RUN_FILE).read_text())
    assert recorded["identity"] == run_identity(recipe)
    fake_checkpoint(out / "checkpoint-2", 2)
    # Longer training and a new learning rate are the same run: it resumes, the change is logged.
    longer = recipe_at(tmp_path, out, max_steps=10, learning_rate=2e-6)
    assert resolve_checkpoint(longer.trainer, longer).endswith("checkpoint-2")


@pytest.mark.parametrize(
    "change,named",
    [
        ({"reward_funcs": ["numeric_answer", "numeric_answer_format"]}, "rewards"),
        ({"prompt_template": "Q: {question}"}, "data.prompt_template"),
        ({"model_name_or_path": "other-model"}, "model.model_name_or_path"),
        ({"seed": 7}, "seed"),
        ({"method": "sft", "reward_funcs": None, "completion_template": "{answer}"}, "method"),
    ],
)
def test_another_recipe_is_refused_in_a_run_folder(tmp_path, offline_cache, change, named):
    out = tmp_path / "out"
    first = recipe_at(tmp_path, out)
    record_run(first)
    fake_checkpoint(out / "checkpoint-2", 2)
    (out / "results.json").write_text('{"before": 0.1}')
    config = {k: v for k, v in {**GRPO, "output_dir": str(out), **change}.items() if v is not None}
    if config["method"] == "sft":
        grpo_only = ("num_generations", "loss_type", "beta", "scale_rewards")
        config = {k: v for k, v in config.items() if k not in grpo_only}
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(config))
    other = load_recipe(path)
    with pytest.raises(
        CheckpointError, match=rf"belongs to a different run(.|\n)*{named}(.|\n)*new output_dir"
    ):
        resolve_checkpoint(other.trainer, other)
    assert json.loads((out / "results.json").read_text()) == {"before": 0.1}
    assert json.loads((out / RUN_FILE).read_text())["identity"] == run_identity(first)


def test_a_folder_from_before_run_records_is_adopted_with_a_warning(tmp_path, offline_cache, caplog):
    out = tmp_path / "out"
    fake_checkpoint(out / "checkpoint-2", 2)
    recipe = recipe_at(tmp_path, out)
    check_run_identity(recipe, out)
    assert "cannot check" in caplog.text
    record_run(recipe)
    assert (out / RUN_FILE).exists()


def test_a_field_added_since_the_run_was_recorded_does_not_make_it_another_run(tmp_path, offline_cache):
    out = tmp_path / "out"
    recipe = recipe_at(tmp_path, out)
    record_run(recipe)
    recorded = json.loads((out / RUN_FILE).read_text())
    del recorded["identity"]["data"]["long_prompts"]  # as written by a version without that field
    (out / RUN_FILE).write_text(json.dumps(recorded))
    check_run_identity(recipe, out)
