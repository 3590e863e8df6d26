"""End-to-end runs of `posttrain train` on a tiny random model and the real (fixture) data: GRPO and SFT,
resume from a checkpoint, the completion log, checkpoint evaluation, and GRPO under DeepSpeed ZeRO-3 with 2 CPU
processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from posttrain.cli import main
from posttrain.trainers import NoRewardSignalError, PosttrainGRPOTrainer
from tests.conftest import adapter_trained

REPO = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"


def grpo_config(model: Path, output_dir: Path, **overrides) -> dict:
    config = {
        "method": "grpo",
        "model_name_or_path": str(model),
        "dataset_name": "gsm_symbolic",
        "prompt_template": "{question}",
        "max_train_samples": 16,
        "heldout_metric": "numeric_answer",
        "heldout_samples": 4,
        "heldout_max_new_tokens": 8,
        "reward_funcs": ["numeric_answer", {"name": "numeric_answer_format", "weight": 0.2}],
        "loss_type": "grpo",
        "beta": 0.0,
        "scale_rewards": "group",
        "num_generations": 4,
        "per_device_train_batch_size": 4,
        "max_completion_length": 8,
        "max_steps": 2,
        "save_steps": 1,
        "logging_steps": 1,
        "output_dir": str(output_dir),
        "use_cpu": True,
        "report_to": "none",
        "resume_from_checkpoint": "auto",
        "seed": 0,
    }
    config.update(overrides)
    return config


def write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def trainer_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "trainer_state.json").read_text())


@pytest.mark.slow
def test_grpo_end_to_end_writes_completions_and_heldout(tiny_model, offline_cache, tmp_path):
    out = tmp_path / "out"
    recipe = write(tmp_path / "grpo.yaml", grpo_config(tiny_model, out, report_to="tensorboard"))
    assert main(["train", str(recipe)]) == 0

    # The offline tracker: TensorBoard reads back the metrics of every step.
    (events,) = (out / "runs").iterdir()
    board = EventAccumulator(str(events))
    board.Reload()
    for tag in ("train/loss", "train/reward", "train/rewards/numeric_answer/mean"):
        assert [e.step for e in board.Scalars(tag)] == [1, 2], tag

    rows = read_jsonl(out / "completions" / "completions.jsonl")
    assert len(rows) == 2 * 4  # 2 steps x (1 prompt x 4 generations)
    assert set(rows[0]["rewards"]) == {"numeric_answer", "numeric_answer_format"}
    assert rows[0]["answer"]  # the gold column travels with each completion
    assert {r["step"] for r in rows} == {1, 2}  # numbered as the trainer's log numbers steps
    results = json.loads((out / "results.json").read_text())
    assert results["before"]["samples"] == results["after"]["samples"] == 4
    assert (out / "checkpoint-2" / "trainer_state.json").exists()
    assert (out / "model.safetensors").exists()

    # Resumed (here: to train one step more), the run still reports where it started.
    assert main(["train", str(recipe), "--max_steps", "3"]) == 0
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["before"] == results["before"] and resumed["after"]["samples"] == 4


@pytest.mark.slow
def test_grpo_resume_continues_from_last_checkpoint(tiny_model, offline_cache, tmp_path):
    out = tmp_path / "out"
    recipe = write(tmp_path / "grpo.yaml", grpo_config(tiny_model, out, heldout_metric=None))
    assert main(["train", str(recipe)]) == 0
    assert trainer_state(out / "checkpoint-2")["global_step"] == 2

    assert main(["train", str(recipe), "--max_steps", "3"]) == 0
    state = trainer_state(out / "checkpoint-3")
    assert state["global_step"] == 3
    # The resumed run trained one new step only: its log holds exactly one more training step entry.
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3]
    steps = [r["step"] for r in read_jsonl(out / "completions" / "completions.jsonl")]
    assert steps.count(3) == 4 and max(steps) == 3


@pytest.mark.slow
def test_sft_end_to_end_with_lora(tiny_model, offline_cache, tmp_path):
    out = tmp_path / "sft"
    config = {
        "method": "sft",
        "model_name_or_path": str(tiny_model),
        "dataset_name": "intent_recognition",
        "prompt_template": "Intent of: {text}",
        "completion_template": "{label}",
        "heldout_metric": "cls_equality",
        "heldout_samples": 4,
        "heldout_max_new_tokens": 4,
        "use_peft": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_target_modules": ["q_proj", "v_proj"],
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_steps": 3,
        "output_dir": str(out),
        "use_cpu": True,
        "report_to": "none",
    }
    assert main(["train", str(write(tmp_path / "sft.yaml", config))]) == 0
    state = trainer_state(out / "checkpoint-3")
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 3
    assert adapter_trained(out)
    assert json.loads((out / "results.json").read_text())["after"]["metric"] == "cls_equality"


@pytest.mark.slow
def test_grpo_under_accelerate_deepspeed_zero3_two_cpu_processes(tiny_model, offline_cache, tmp_path):
    out = tmp_path / "zero3"
    recipe = write(
        tmp_path / "zero3.yaml",
        grpo_config(tiny_model, out, heldout_metric=None, per_device_train_batch_size=2, max_steps=2),
    )
    env = {**os.environ, "POSTTRAIN_CACHE": str(offline_cache)}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "accelerate_configs" / "cpu_zero3.yaml"),
        "--main_process_port",
        "29517",
        "-m",
        "posttrain",
        "train",
        str(recipe),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = read_jsonl(out / "completions" / "completions.jsonl")
    # 2 steps x 2 processes x 2 completions each, gathered on the main process.
    assert len(rows) == 8
    assert trainer_state(out / "checkpoint-2")["global_step"] == 2


def test_qlora_loads_4bit_linear_layers(tiny_model):
    import bitsandbytes as bnb

    from posttrain.configs import ModelConfig
    from posttrain.models import load_model

    model = load_model(ModelConfig(model_name_or_path=str(tiny_model), load_in_4bit=True, use_peft=True))
    quantized = [name for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)]
    assert "model.layers.0.self_attn.q_proj" in quantized


@pytest.mark.slow
def test_qlora_sft_trains_adapters(tiny_model, offline_cache, tmp_path):
    out = tmp_path / "qlora"
    config = {
        "method": "sft",
        "model_name_or_path": str(tiny_model),
        "dataset_name": "intent_recognition",
        "prompt_template": "Intent of: {text}",
        "completion_template": "{label}",
        "use_peft": True,
        "load_in_4bit": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_target_modules": ["q_proj", "v_proj"],
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
        "output_dir": str(out),
        "use_cpu": True,
        "report_to": "none",
    }
    assert main(["train", str(write(tmp_path / "qlora.yaml", config))]) == 0
    assert adapter_trained(out)
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    """The real SmolLM2-135M-Instruct checkpoint, converted once into the user's cache."""
    from posttrain.models import ensure_embedded_model

    return ensure_embedded_model("smollm2-135m-instruct")


@pytest.mark.slow
def test_quickstart_recipe_runs_on_the_embedded_model(embedded_model, offline_cache, tmp_path):
    out = tmp_path / "quickstart"
    overrides = ["--model_name_or_path", str(embedded_model), "--output_dir", str(out), "--max_steps", "2"]
    overrides += ["--max_train_samples", "16", "--heldout_samples", "8", "--save_steps", "2"]
    assert main(["train", str(REPO / "recipes/quickstart/sft_intent_cpu.yaml"), *overrides]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["before"]["samples"] == results["after"]["samples"] == 8
    assert results["after"]["scored"] == 8
    assert adapter_trained(out)  # two LoRA steps moved the adapter off its zero start
    assert (out / "training_curves.png").stat().st_size > 0


@pytest.mark.slow
def test_recipe_names_its_evaluation_and_checkpoints_are_evaluated(tiny_model, offline_cache, tmp_path):
    evaluation = {
        "model_name_or_path": "replaced-by-the-trained-model",
        "dataset_name": "gsm_symbolic",
        "prompt_template": "{question}",
        "scorers": ["numeric_answer"],
        "max_samples": 3,
        "max_new_tokens": 4,
        "engine": "hf",
    }
    write(tmp_path / "eval.yaml", evaluation)
    out = tmp_path / "out"
    config = grpo_config(
        tiny_model, out, heldout_metric=None, evaluation="eval.yaml", evaluation_on_save=True
    )
    config.update(use_peft=True, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"])
    assert main(["train", str(write(tmp_path / "grpo.yaml", config))]) == 0
    for name in ("checkpoint-1", "checkpoint-2", "final"):
        assert json.loads((out / "eval" / name / "summary.json").read_text())["prompts"] == 3
    assert (out / "eval" / "final" / "merged-model" / "config.json").exists()  # base + trained adapter
    history = json.loads((out / "results.json").read_text())["log_history"]
    assert [e["step"] for e in history if "eval/pass@1" in e] == [1, 2]

    # As if killed while checkpoint-2, the last step, was being evaluated (after its first sample): the run
    # resumes from checkpoint-2, trains no step more, finishes that evaluation, and every prompt's samples are
    # there once.
    samples = out / "eval" / "checkpoint-2" / "samples.jsonl"
    samples.write_text(samples.read_text().splitlines(keepends=True)[0])
    (out / "eval" / "checkpoint-2" / "summary.json").unlink()
    assert main(["train", str(write(tmp_path / "grpo.yaml", config))]) == 0
    assert json.loads((out / "eval" / "checkpoint-2" / "summary.json").read_text())["prompts"] == 3
    assert sorted(row["index"] for row in read_jsonl(samples)) == [0, 1, 2]
    assert not (out / "checkpoint-3").exists()
    history = json.loads((out / "results.json").read_text())["log_history"]
    assert [e["step"] for e in history if "eval/pass@1" in e] == [1, 2]


def watch(patience: int, rewards: list[list[float]], weights=(1.0,), generations: int = 2, step: int = 0):
    """Run the trainer's signal check over successive batches of gathered rewards (one row per completion)."""
    trainer = SimpleNamespace(
        args=SimpleNamespace(signal_patience=patience),
        reward_func_names=[f"r{i}" for i in range(len(weights))],
        reward_weights=torch.tensor(weights),
        num_generations=generations,
        state=SimpleNamespace(global_step=step),
    )
    for batch in rewards:
        PosttrainGRPOTrainer._watch_signal(trainer, torch.tensor(batch))


NAN = float("nan")


def test_a_run_without_reward_signal_stops_after_patience_batches(caplog):
    watch(3, [[[NAN], [NAN]], [[NAN], [0.5]], [[NAN], [NAN]], [[NAN], [NAN]]])  # a score resets the count
    with pytest.raises(NoRewardSignalError, match=r"3 generation batches in a row \(up to step 5\): r0"):
        watch(3, [[[NAN], [NAN]]] * 3, step=4)
    watch(0, [[[NAN], [NAN]]] * 5)  # 0: never stops
    assert "same reward" not in caplog.text
    watch(2, [[[1.0], [1.0]], [[0.0], [0.0]]])  # every group flat: zero advantage
    assert "every group's completions got the same reward" in caplog.text


@pytest.mark.slow
def test_rewards_that_never_apply_stop_the_run(tiny_model, offline_cache, tmp_path, caplog):
    config = grpo_config(tiny_model, tmp_path / "out", heldout_metric=None, max_steps=4, signal_patience=2)
    config["reward_funcs"] = [f"{FIXTURES / 'plugin_rewards.py'}:never_applies"]
    assert main(["train", str(write(tmp_path / "none.yaml", config))]) == 2  # one clean error, exit 2
    assert "never_applies returned None or failed for every sample" in caplog.text
    assert (tmp_path / "out" / "checkpoint-1").exists()  # what was trained is kept
