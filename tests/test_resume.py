"""Killed runs resume with nothing lost: a GRPO and an SFT run killed with SIGKILL (at a random step, and while a
checkpoint is being written) and resumed with ``resume_from_checkpoint: auto`` end exactly where the same run
uninterrupted ends: the same weights, the same per-step losses and the same completion log, row for row.

Exact equality holds here because a CPU run with the same seed, thread count and library versions is
deterministic, and the checkpoint restores every state the next step reads (weights, optimizer, scheduler, RNG,
data order). On GPUs, non-deterministic kernels would make the comparison one of tolerance.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from posttrain.jsonl import read_jsonl
from tests.test_train_e2e import grpo_config, trainer_state, write

FIXTURES = Path(__file__).parent / "fixtures"
MAX_STEPS = 6
SAVE_STEPS = 2


def sft_config(model: Path, output_dir: Path) -> dict:
    return {
        "method": "sft",
        "model_name_or_path": str(model),
        "dataset_name": "intent_recognition",
        "max_train_samples": 48,
        "prompt_template": "Intent of: {text}",
        "completion_template": "{label}",
        "use_peft": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_target_modules": ["q_proj", "v_proj"],
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "max_steps": MAX_STEPS,
        "save_steps": SAVE_STEPS,
        "logging_steps": 1,
        "output_dir": str(output_dir),
        "use_cpu": True,
        "report_to": "none",
        "resume_from_checkpoint": "auto",
        "seed": 0,
    }


def train(recipe: Path, cache: Path, *kill: str) -> subprocess.CompletedProcess:
    """`posttrain train recipe` in a fresh process; with ``kill`` (``step N`` or ``save N``) it is killed there."""
    command = [str(FIXTURES / "killed_train.py"), *kill] if kill else ["-m", "posttrain", "train"]
    env = {**os.environ, "POSTTRAIN_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, *command, str(recipe)], env=env, capture_output=True, text=True, timeout=900
    )


def outcome(out: Path) -> dict:
    """What a finished run leaves: final weights, the loss of every step, the completion log."""
    weights = out / (
        "adapter_model.safetensors" if (out / "adapter_model.safetensors").exists() else "model.safetensors"
    )
    history = trainer_state(out / f"checkpoint-{MAX_STEPS}")["log_history"]
    return {
        "weights": load_file(str(weights)),
        "losses": {e["step"]: e["loss"] for e in history if "loss" in e},
        "completions": read_jsonl(out / "completions" / "completions.jsonl", repair=False),
    }


def assert_same_run(resumed: dict, uninterrupted: dict, where: str) -> None:
    assert resumed["losses"] == uninterrupted["losses"], where
    assert sorted(resumed["losses"]) == list(range(1, MAX_STEPS + 1)), where
    assert resumed["weights"].keys() == uninterrupted["weights"].keys()
    for name, tensor in uninterrupted["weights"].items():
        assert torch.equal(resumed["weights"][name], tensor), f"{where}: {name} differs"
    # Each completion once, in order, whatever step the kill came at.
    assert resumed["completions"] == uninterrupted["completions"], where


def killed_and_resumed(config: dict, tmp_path: Path, cache: Path, name: str, *kill: str) -> dict:
    out = tmp_path / name
    recipe = write(tmp_path / f"{name}.yaml", {**config, "output_dir": str(out)})
    killed = train(recipe, cache, *kill)
    assert killed.returncode == -9, (
        f"{name}: expected a SIGKILL, got {killed.returncode}\n{killed.stderr[-2000:]}"
    )
    resumed = train(recipe, cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return outcome(out)


@pytest.mark.slow
def test_a_killed_evaluation_resumes_to_the_uninterrupted_result(tiny_model, offline_cache, tmp_path):
    def command(out: str) -> list[str]:
        return [
            "eval",
            "--model_name_or_path", str(tiny_model),
            "--dataset_name", "gsm_symbolic",
            "--prompt_template", "{question}",
            "--scorers", "numeric_answer",
            "--max_samples", "8",
            "--n", "2",
            "--temperature", "1.0",
            "--max_new_tokens", "4",
            "--engine", "hf",
            "--chunk_size", "3",
            "--output_dir", str(tmp_path / out),
        ]  # fmt: skip

    env = {**os.environ, "POSTTRAIN_CACHE": str(offline_cache)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=900)

    assert run("-m", "posttrain", *command("uninterrupted")).returncode == 0
    row = random.Random().randint(1, 8)  # any row must do; the message names the one drawn
    killed = run(str(FIXTURES / "killed_train.py"), "rows", str(row), *command("killed"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = run("-m", "posttrain", *command("killed"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("samples.jsonl", "summary.json"):
        expected = (tmp_path / "uninterrupted" / name).read_text()
        assert (tmp_path / "killed" / name).read_text() == expected, f"{name}, killed at row {row}"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["grpo", "sft"])
def test_a_killed_run_resumes_to_the_uninterrupted_result(method, tiny_model, offline_cache, tmp_path):
    make = {"grpo": grpo_config, "sft": sft_config}[method]
    base = make(tiny_model, tmp_path / "unused")
    if method == "grpo":
        base.update(max_steps=MAX_STEPS, save_steps=SAVE_STEPS, heldout_metric=None)
    reference = tmp_path / "uninterrupted"
    done = train(
        write(tmp_path / "uninterrupted.yaml", {**base, "output_dir": str(reference)}), offline_cache
    )
    assert done.returncode == 0, done.stderr[-3000:]
    uninterrupted = outcome(reference)

    step = random.Random().randint(1, MAX_STEPS - 1)  # any step must do; the message names the one drawn
    resumed = killed_and_resumed(base, tmp_path, offline_cache, "killed", "step", str(step))
    assert_same_run(resumed, uninterrupted, f"{method} killed after step {step}")

    # Killed while checkpoint-4 is written: its weights are on disk, its optimizer and trainer state are not.
    resumed = killed_and_resumed(base, tmp_path, offline_cache, "killed_in_save", "save", "4")
    assert_same_run(resumed, uninterrupted, f"{method} killed while saving checkpoint-4")
