"""The CLI starts light and quiet: listing commands and --help load no training stack, every command's help
renders, the dependencies' start-up chatter is filtered while real warnings show, and --heldout_samples 0 turns
the held-out check off."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.cli import argparse_help, build_parser, main

REPO = Path(__file__).parent.parent
HEAVY = ("torch", "transformers", "trl", "peft", "bitsandbytes", "vllm", "deepspeed")

# Runs the CLI in a fresh interpreter, then prints which heavy packages it imported.
PROBE = """\
import json, sys
from posttrain.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
print("LOADED " + json.dumps([m for m in {heavy!r} if m in sys.modules]))
sys.exit(code)
"""


def run_python(code: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def loaded_by(result: subprocess.CompletedProcess) -> list[str]:
    line = [x for x in result.stdout.splitlines() if x.startswith("LOADED ")][-1]
    return json.loads(line.removeprefix("LOADED "))


@pytest.mark.parametrize(
    ("argv", "listed"),
    [
        (["--help"], "validate"),
        (["datasets"], "gsm_symbolic"),
        (["rewards"], "reward_model"),
        (["methods"], "cls_rl"),
        (["builders"], "classification"),
    ],
)
def test_listing_commands_do_not_load_the_training_stack(argv, listed):
    result = run_python(PROBE.format(heavy=HEAVY), *argv)
    assert result.returncode == 0, result.stderr
    assert listed in result.stdout
    assert loaded_by(result) == []


def subcommands() -> list[str]:
    (commands,) = [a for a in build_parser()._actions if isinstance(a.choices, dict)]
    return sorted(commands.choices)


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("command", subcommands())
def test_every_command_shows_its_help(command, flag, capsys):
    try:
        code = main([command, flag])
    except SystemExit as stop:  # argparse's own --help exits
        code = stop.code
    out = capsys.readouterr().out
    assert code == 0
    assert command in out and "%%" not in out


def test_help_of_every_method_and_data_builder(capsys):
    from posttrain.data import registered_data_builders
    from posttrain.methods import registered_methods

    for method in registered_methods():
        assert main(["train", "--method", method, "--help"]) == 0
        out = capsys.readouterr().out
        assert f"fields of method {method!r}" in out and "--heldout_samples" in out and "%%" not in out
    for builder, spec in registered_data_builders().items():
        assert main(["eval", "--data_builder", builder, "--help"]) == 0
        out = capsys.readouterr().out
        fields = [f for f in spec.args_class.__dataclass_fields__ if not f.startswith("_")]
        assert fields and all(f"--{f}" in out for f in fields) and "%%" not in out


def test_a_literal_percent_in_help_is_shown_once():
    text = "keep 5% of rows, ~20%% slower (default: %(default)s)"
    assert argparse_help(text) % {"default": 3} == "keep 5% of rows, ~20% slower (default: 3)"


SFT_RECIPE = """\
method: sft
model_name_or_path: {model}
dataset_name: gsm_symbolic
max_train_samples: 8
prompt_template: "{{question}}"
completion_template: "{{solution}}"
heldout_metric: numeric_answer
heldout_samples: 4
max_length: 120
max_steps: 1
output_dir: out
per_device_train_batch_size: 2
report_to: none
use_cpu: true
"""

# One piece of each message that posttrain.logs silences and a plain run of the training stack prints.
NOISE = (
    "gemm_4bit_forward",  # bitsandbytes, at import
    "Triton",  # vLLM, at import
    "Setting accelerator to CPU",  # DeepSpeed
    "reduce_op",  # torch's deprecation warning, from vLLM
    "TRL currently supports vLLM versions",
)
# The warning docs/reliability.md shows for SFT rows that max_length cuts.
CUT_ROWS = "of 8 training rows are longer than max_length=120 tokens"

VALIDATE = """\
import sys
from posttrain.cli import main
code = main(["validate", "recipe.yaml"])
# The modules that print the silenced lines were loaded, so the lines would have come.
print("LOADED", "bitsandbytes.backends.cpu.ops" in sys.modules, "vllm.triton_utils.importing" in sys.modules)
sys.exit(code)
"""


def test_validate_shows_real_warnings_and_no_dependency_noise(tiny_model, offline_cache, tmp_path):
    (tmp_path / "recipe.yaml").write_text(SFT_RECIPE.format(model=tiny_model))
    result = run_python(VALIDATE, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "LOADED True True" in result.stdout
    assert CUT_ROWS in output
    assert [n for n in NOISE if n in output] == []


# DeepSpeed's accelerator line and torch's reduce_op warning come only with a trainer or a vLLM engine: made here
# directly, next to a message of the same source that must still show.
DIRECT = """\
import posttrain
import torch.distributed as dist
from deepspeed.accelerator import get_accelerator
from deepspeed.utils import logger

get_accelerator()
logger.warning("another DeepSpeed warning")
exec("dist.reduce_op.SUM", {"__name__": "vllm.triton_utils.dispatcher", "dist": dist})
exec("dist.reduce_op.MAX", {"__name__": "user_code", "dist": dist})
"""


def test_deepspeed_and_torch_noise_is_filtered_by_source_and_message():
    result = run_python(DIRECT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "another DeepSpeed warning" in output
    assert output.count("`torch.distributed.reduce_op` is deprecated") == 1  # user_code's, not vLLM's
    assert "Setting accelerator to CPU" not in output


def test_heldout_samples_zero_means_no_heldout_check(
    tiny_model, offline_cache, tmp_path, monkeypatch, caplog
):
    from posttrain.recipe import load_recipe
    from posttrain.train import preflight

    monkeypatch.chdir(tmp_path)
    Path("recipe.yaml").write_text(SFT_RECIPE.format(model=tiny_model))
    checks = preflight(load_recipe("recipe.yaml", ["--heldout_samples", "0"]))
    assert checks.test is None and checks.metric is None
    assert preflight(load_recipe("recipe.yaml")).test.num_rows == 4
    caplog.set_level(logging.INFO)
    assert main(["validate", "recipe.yaml", "--heldout_samples", "0"]) == 0
    assert "recipe.yaml: OK (method sft, 8 training rows)" in caplog.text


def test_negative_heldout_samples_is_refused(tiny_model, offline_cache, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    Path("recipe.yaml").write_text(SFT_RECIPE.format(model=tiny_model))
    assert main(["validate", "recipe.yaml", "--no-data", "--heldout_samples", "-1"]) == 2
    assert "heldout_samples must be 0 (no held-out check) or a number of prompts, not -1." in caplog.text


@pytest.mark.slow
def test_training_with_heldout_samples_zero(tiny_model, offline_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("recipe.yaml").write_text(
        SFT_RECIPE.format(model=tiny_model).replace("max_length: 120", "max_length: 512")
    )
    assert main(["train", "recipe.yaml", "--heldout_samples", "0"]) == 0
    results = json.loads(Path("out/results.json").read_text())
    assert "train" in results and "before" not in results and "after" not in results
