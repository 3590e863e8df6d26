"""Bad input is refused in one clean message before anything expensive starts, and nothing already written is lost.

Each case below is a row of the "Bad input" table in docs/reliability.md, and `test_the_docs_table_is_these_cases`
holds the table to this list, so the documented messages are the ones asserted here. Every recipe case runs
through `posttrain validate` and `posttrain train` with the model loaders replaced by a tripwire: the error must
come first, with exit status 2, no traceback, and no file written to ``output_dir``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from posttrain.cli import main
from posttrain.parsing import RecipeError

REPO = Path(__file__).parent.parent
DOC = REPO / "docs" / "reliability.md"

# The line of each key matters: errors name it. MODEL is replaced by the tiny test model's folder.
GRPO_RECIPE = """\
method: grpo
model_name_or_path: MODEL
dataset_name: gsm_symbolic
max_train_samples: 8
prompt_template: "{question}"
beta: 0.0
learning_rate: 1.0e-05
loss_type: dapo
lr_scheduler_type: constant
max_completion_length: 16
max_steps: 1
num_generations: 2
output_dir: out
per_device_train_batch_size: 2
report_to: none
resume_from_checkpoint: auto
reward_funcs: [numeric_answer]
scale_rewards: group
use_cpu: true
"""

SFT_RECIPE = """\
method: sft
model_name_or_path: MODEL
dataset_name: gsm_symbolic
max_train_samples: 8
prompt_template: "{question}"
completion_template: "{solution}"
learning_rate: 1.0e-04
max_length: 1024
max_steps: 1
output_dir: out
per_device_train_batch_size: 2
report_to: none
resume_from_checkpoint: auto
use_cpu: true
"""

REFUSED = "refused, exit 2"


@dataclass(frozen=True)
class Case:
    """One bad input: what the docs table shows, and how the test makes it."""

    bad_input: str  # the table's first column
    tried: str  # what the case sets, as the table shows it
    message: str  # text the error (or warning) contains, verbatim but for "…", which stands for any text
    hint: str = ""  # the `hint:` line, when there is one
    outcome: str = REFUSED
    base: str = GRPO_RECIPE
    lines: dict[str, str] = field(
        default_factory=dict
    )  # key -> its new line ("" drops it); new keys are appended
    args: tuple[str, ...] = ()  # command-line overrides
    files: dict[str, str] = field(default_factory=dict)  # extra files next to the recipe
    recipe: str = "recipe.yaml"  # the recipe file the command is given


CASES = [
    Case(
        "Broken YAML",
        "`reward_funcs: [numeric_answer` (bracket not closed)",
        "recipe.yaml is not valid YAML: line 18, column 14: expected ',' or ']', but got ':' (while parsing a flow "
        "sequence that starts on line 17)",
        lines={"reward_funcs": "reward_funcs: [numeric_answer"},
    ),
    Case(
        "Missing recipe file",
        "`posttrain train nope.yaml`",
        "Recipe file not found: nope.yaml",
        recipe="nope.yaml",
    ),
    Case(
        "Unknown key",
        "`frobnicate: 3`",
        "unknown key 'frobnicate' in recipe.yaml (line 20)",
        lines={"frobnicate": "frobnicate: 3"},
    ),
    Case(
        "Misspelled key",
        "`lerning_rate: 1.0e-05`",
        "unknown key 'lerning_rate' in recipe.yaml (line 7); did you mean 'learning_rate'?",
        lines={"learning_rate": "lerning_rate: 1.0e-05"},
    ),
    Case(
        "Misspelled flag",
        "`--num_generation 4`",
        "unknown key 'num_generation' in the command-line overrides; did you mean 'num_generations'?",
        args=("--num_generation", "4"),
    ),
    Case(
        "Wrong type",
        "`learning_rate: fast`",
        "learning_rate in recipe.yaml (line 7): 'fast' is not a number",
        lines={"learning_rate": "learning_rate: fast"},
    ),
    Case(
        "Wrong type on the command line",
        "`--learning_rate fast`",
        "invalid command-line override: argument --learning_rate/--learning-rate: invalid float value: 'fast'",
        args=("--learning_rate", "fast"),
    ),
    Case(
        "Value not among the choices",
        "`lr_scheduler_type: cosin`",
        "lr_scheduler_type in recipe.yaml (line 9): 'cosin' is not one of linear, cosine, …; did you mean 'cosine'?",
        lines={"lr_scheduler_type": "lr_scheduler_type: cosin"},
    ),
    Case(
        "Missing dataset column",
        '`prompt_template: "{problem}"`',
        "missing column(s) 'problem' needed by the rewards and templates (split 'train'); available columns: "
        "'question', 'answer', 'solution', 'template_id'",
        lines={"prompt_template": 'prompt_template: "{problem}"'},
    ),
    Case(
        "Empty dataset file",
        "`dataset_name: empty.jsonl` (a file of 0 bytes)",
        "Dataset file 'empty.jsonl' is empty: it has no rows to train or evaluate on.",
        lines={"dataset_name": "dataset_name: empty.jsonl"},
        files={"empty.jsonl": ""},
    ),
    Case(
        "Malformed dataset file",
        "`dataset_name: rows.jsonl` whose second line lacks a colon",
        "Dataset file 'rows.jsonl' cannot be read as json: line 2 is not valid JSON (Expecting ':' delimiter at "
        "column 13).",
        lines={"dataset_name": "dataset_name: rows.jsonl"},
        files={"rows.jsonl": '{"question": "1 + 1?"}\n{"question" "2 + 2?"}\n'},
    ),
    Case(
        "Empty split after sampling",
        "`max_train_samples: 0`",
        "Split 'train' of dataset 'gsm_symbolic' has no rows after max_train_samples: there is nothing to train on.",
        lines={"max_train_samples": "max_train_samples: 0"},
    ),
    Case(
        "Prompts longer than the context (GRPO)",
        "`max_completion_length: 1000` (context 1024)",
        "8 of 8 training prompts do not fit the model's context of 1024 tokens with 1000 new tokens (longest: row "
        "…). Generation cannot go past the context, and prompts are not cut unless a recipe asks: set "
        "max_prompt_length to at most 24 with long_prompts: drop or truncate, shorten the template, or generate "
        "fewer tokens.",
        lines={"max_completion_length": "max_completion_length: 1000"},
    ),
    Case(
        "Held-out prompts longer than the context",
        "`heldout_metric: numeric_answer`, `heldout_max_new_tokens: 1000`",
        "4 of 4 held-out prompts do not fit the model's context of 1024 tokens with 1000 new tokens",
        lines={
            "heldout_metric": "heldout_metric: numeric_answer",
            "heldout_samples": "heldout_samples: 4",
            "heldout_max_new_tokens": "heldout_max_new_tokens: 1000",
        },
    ),
    Case(
        "Prompts that fill max_length (SFT)",
        "`max_length: 40`",
        "8 of 8 training prompts fill max_length=40 on their own (longest: row …): TRL keeps the first max_length "
        "tokens of a row, so their completions would be cut off entirely.",
        base=SFT_RECIPE,
        lines={"max_length": "max_length: 40"},
    ),
    Case(
        "Rows longer than max_length (SFT)",
        "`max_length: 120`",
        "5 of 8 training rows are longer than max_length=120 tokens (longest 251): TRL keeps their first 120 "
        "tokens, cutting the end of the completion.",
        outcome="warned, trains (exit 0)",
        base=SFT_RECIPE,
        lines={"max_length": "max_length: 120"},
    ),
    Case(
        "Prompts longer than max_prompt_length",
        "`max_prompt_length: 80`",
        "3 of 8 training prompts are longer than max_prompt_length=80 tokens (longest: row 7, 101 tokens). Set "
        "long_prompts: drop to leave them out, or long_prompts: truncate to keep their last 80 tokens; or raise "
        "max_prompt_length.",
        lines={"max_prompt_length": "max_prompt_length: 80"},
    ),
    Case(
        "Prompts longer than max_prompt_length, to drop",
        "`max_prompt_length: 80`, `long_prompts: drop`",
        "Dropped 3 of 8 training prompts longer than max_prompt_length=80 tokens (longest: row 7, 101 tokens); 5 left.",
        outcome="warned, trains on the other rows (exit 0)",
        lines={"max_prompt_length": "max_prompt_length: 80", "long_prompts": "long_prompts: drop"},
    ),
    Case(
        "max_prompt_length without room for the answer",
        "`max_prompt_length: 1020` (context 1024)",
        "max_prompt_length=1020 with max_completion_length=16 needs 1036 tokens, more than the model's context of "
        "1024: set max_prompt_length to at most 1008, or generate fewer tokens.",
        lines={"max_prompt_length": "max_prompt_length: 1020"},
    ),
    Case(
        "Unknown reward",
        "`reward_funcs: [numeric_answr]`",
        "reward spec 'numeric_answr': no reward is registered as 'numeric_answr'. Did you mean 'numeric_answer' or "
        "'numeric_answer_format'?",
        hint="`posttrain rewards` lists the registered rewards.",
        lines={"reward_funcs": "reward_funcs: [numeric_answr]"},
    ),
    Case(
        "Unknown model path",
        "`model_name_or_path: ./models/run-7`",
        "model_name_or_path './models/run-7' does not exist.",
        lines={"model_name_or_path": "model_name_or_path: ./models/run-7"},
    ),
    Case(
        "Misspelled model name",
        "`model_name_or_path: smollm2-135m`",
        "Unknown model 'smollm2-135m': it is neither an embedded model (smollm2-135m-instruct) nor a local folder. "
        "Did you mean 'smollm2-135m-instruct'?",
        lines={"model_name_or_path": "model_name_or_path: smollm2-135m"},
    ),
    Case(
        "Unknown dataset",
        "`dataset_name: gsm_symbolc`",
        "Unknown dataset 'gsm_symbolc': it is not registered and not a local file or folder. Did you mean "
        "'gsm_symbolic'?",
        hint="`posttrain datasets` lists the registered datasets.",
        lines={"dataset_name": "dataset_name: gsm_symbolc"},
    ),
    Case(
        "Missing dataset file",
        "`dataset_name: ./data/train.jsonl`",
        "Dataset path './data/train.jsonl' does not exist",
        lines={"dataset_name": "dataset_name: ./data/train.jsonl"},
    ),
    Case(
        "Unknown method",
        "`method: grop`",
        "Unknown method 'grop'. Did you mean 'grpo'?",
        hint="`posttrain methods` lists the methods.",
        lines={"method": "method: grop"},
    ),
    Case(
        "Unknown data_builder",
        "`data_builder: clasification`",
        "Unknown data_builder 'clasification'. Did you mean 'classification'?",
        hint="`posttrain builders` lists the data builders and what each does.",
        lines={"data_builder": "data_builder: clasification"},
    ),
]

CASES += [
    Case(
        "Corrupt checkpoint",
        "`out/checkpoint-2/model.safetensors` cut short (as by a full disk), `resume_from_checkpoint: auto`",
        "No checkpoint in out is complete: checkpoint-2: out/checkpoint-2/model.safetensors is truncated",
        hint="move the damaged checkpoints aside to start over, or point resume_from_checkpoint at a good copy.",
        files={
            "out/checkpoint-2/trainer_state.json": '{"global_step": 2}',
            "out/checkpoint-2/model.safetensors": "x",
        },
    ),
    Case(
        "Another run's output_dir",
        "`output_dir` of an SFT run (its `run.json`) given to this GRPO recipe",
        "out belongs to a different run (recorded in out/run.json):…method: 'sft' there, 'grpo' in this recipe…"
        "Choose a new output_dir for this recipe",
        files={"out/run.json": '{"identity": {"method": "sft"}}'},
    ),
]

# The evaluation row is not a recipe: `test_torn_samples_file_resumes` makes it.
TORN_SAMPLES = Case(
    "Evaluation samples file torn mid-line",
    "the last line of `samples.jsonl` cut in half, then `posttrain eval` again",
    "Dropping a partial line in ev/samples.jsonl (interrupted write)",
    outcome="resumes: regenerates that prompt only (exit 0)",
)
ROWS = [*CASES, TORN_SAMPLES]


def table_row(case: Case) -> str:
    hint = f" (hint: {case.hint})" if case.hint else ""
    return f"| {case.bad_input} | {case.tried} | {case.message}{hint} | {case.outcome} |"


def recipe_text(case: Case, model: Path) -> str:
    lines = case.base.replace("MODEL", str(model)).splitlines()
    keys = [line.split(":", 1)[0] for line in lines]
    for key, new in case.lines.items():
        if key in keys:
            lines[keys.index(key)] = new
        else:
            lines.append(new)
    return "".join(line + "\n" for line in lines if line)


class ModelLoaded(Exception):
    """Raised by the loader tripwire: the run got as far as loading a model."""


@pytest.fixture()
def tripwire(monkeypatch) -> list[str]:
    """Replace every model and tokenizer loader the trainer families call; returns the calls made."""
    calls: list[str] = []

    def loader(name):
        def load(*args, **kwargs):
            calls.append(name)
            raise ModelLoaded(name)

        return load

    for name in ("load_model", "load_tokenizer", "load_reward_model"):
        monkeypatch.setattr(f"posttrain.methods.families.{name}", loader(name))
    return calls


def says(text: str, message: str) -> bool:
    """Whether ``text`` contains ``message``, where each "…" in ``message`` stands for any text."""
    pattern = ".*?".join(re.escape(part) for part in message.split("…"))
    return re.search(pattern, text, flags=re.DOTALL) is not None


def messages(caplog) -> str:
    return "\n".join(record.getMessage() for record in caplog.records)


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder`` with its content digest and modification time."""
    return {
        str(path.relative_to(folder)): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("case", CASES, ids=[c.bad_input for c in CASES])
def test_bad_input_is_refused_before_any_model_loads(
    case, tiny_model, offline_cache, tmp_path, monkeypatch, caplog, tripwire
):
    monkeypatch.chdir(tmp_path)
    Path("recipe.yaml").write_text(recipe_text(case, tiny_model))
    for name, text in case.files.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text)
    before = snapshot(Path("out")) if Path("out").exists() else None
    caplog.set_level(logging.INFO)

    for command in ("validate", "train"):
        caplog.clear()
        if case.outcome == REFUSED:
            assert main([command, case.recipe, *case.args]) == 2
        elif command == "validate":
            assert main([command, case.recipe, *case.args]) == 0
        else:  # a warning only: training goes on to load the model, after saying it
            with pytest.raises(ModelLoaded):
                main([command, case.recipe, *case.args])
        text = messages(caplog)
        assert says(text, case.message), f"{command}: {text}"
        if case.outcome == REFUSED:
            errors = [r.getMessage() for r in caplog.records if r.getMessage().startswith("error: ")]
            assert len(errors) == 1 and says(errors[0], case.message)
            assert (f"hint: {case.hint}" in text) == bool(case.hint)
        assert "Traceback" not in text
    assert tripwire == ([] if case.outcome == REFUSED else ["load_tokenizer"])
    if case.outcome == REFUSED:  # nothing was written before the error
        assert (snapshot(Path("out")) if Path("out").exists() else None) == before
    else:  # checks passed: the run is recorded, nothing else is written before the model loads
        assert [p.name for p in Path("out").iterdir()] == ["run.json"]


def finished_run(out: Path) -> None:
    """An output_dir as a finished run leaves it: a checkpoint, the model, results, the completion log."""
    checkpoint = out / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 2}')
    (checkpoint / "model.safetensors").write_bytes(b"weights of step 2")
    (out / "model.safetensors").write_bytes(b"final weights")
    (out / "results.json").write_text('{"before": {"mean": 0.1}, "after": {"mean": 0.4}}')
    (out / "completions").mkdir()
    (out / "completions" / "completions.jsonl").write_text('{"step": 1, "completion": "4"}\n')


@pytest.mark.parametrize(
    "bad_input",
    ["Wrong type", "Missing dataset column", "Prompts longer than the context (GRPO)", "Unknown model path"],
)
def test_a_bad_recipe_leaves_an_existing_output_dir_as_it_was(
    bad_input, tiny_model, offline_cache, tmp_path, monkeypatch, tripwire
):
    (case,) = [c for c in CASES if c.bad_input == bad_input]
    monkeypatch.chdir(tmp_path)
    Path("recipe.yaml").write_text(recipe_text(case, tiny_model))
    finished_run(Path("out"))
    before = snapshot(Path("out"))
    assert main(["train", "recipe.yaml"]) == 2
    assert snapshot(Path("out")) == before
    assert tripwire == []


def test_the_tripwire_catches_a_good_recipe(tiny_model, offline_cache, tmp_path, monkeypatch, tripwire):
    """The control: the same recipe without a fault gets as far as loading the model."""
    monkeypatch.chdir(tmp_path)
    Path("recipe.yaml").write_text(recipe_text(Case("", "", ""), tiny_model))
    assert main(["validate", "recipe.yaml"]) == 0
    with pytest.raises(ModelLoaded):
        main(["train", "recipe.yaml"])
    assert tripwire == ["load_tokenizer"]


def test_torn_samples_file_resumes(tiny_model, offline_cache, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    command = ["eval", "--model_name_or_path", str(tiny_model), "--dataset_name", "gsm_symbolic"]
    command += ["--prompt_template", "{question}", "--scorers", "numeric_answer", "--max_samples", "3"]
    command += ["--max_new_tokens", "2", "--engine", "hf", "--chunk_size", "1", "--output_dir", "ev"]
    assert main(command) == 0
    samples = Path("ev/samples.jsonl")
    lines = samples.read_text().splitlines()
    samples.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][: len(lines[2]) // 2])
    caplog.set_level(logging.INFO)
    assert main(command) == 0
    assert says(messages(caplog), TORN_SAMPLES.message)
    assert "resuming, 2 of 3 prompts already scored" in messages(caplog)
    assert samples.read_text().splitlines() == lines  # the two whole rows kept, the torn one written again


def test_the_docs_table_is_these_cases():
    text = DOC.read_text()
    section = text.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    documented = [
        line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Bad")
    ]
    expected = [table_row(case) for case in ROWS]
    assert documented == expected, "docs/reliability.md's table should read:\n" + "\n".join(expected)


def test_debug_shows_the_traceback_of_bad_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("recipe.yaml").write_text("method: grpo\nlerning_rate: 1.0\n")
    for argv in (["--debug", "validate", "recipe.yaml"], ["validate", "recipe.yaml", "--debug"]):
        with pytest.raises(RecipeError, match="lerning_rate"):
            main(argv)
    monkeypatch.setenv("POSTTRAIN_DEBUG", "1")
    with pytest.raises(RecipeError, match="lerning_rate"):
        main(["validate", "recipe.yaml"])


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr("posttrain.recipe.load_recipe", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["validate", str(tmp_path / "recipe.yaml")])


@pytest.mark.parametrize(
    ("rank", "local_rank", "reported"),
    [("0", "0", True), ("1", "1", False), ("2", "0", True)],
    ids=["first process", "second process of a machine", "first process of the second machine"],
)
def test_a_launch_reports_bad_input_once_per_machine(
    tmp_path, monkeypatch, caplog, rank, local_rank, reported
):
    monkeypatch.chdir(tmp_path)
    Path("recipe.yaml").write_text("method: grpo\nlerning_rate: 1.0\n")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert main(["validate", "recipe.yaml"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert bool(errors) == reported
    assert all(e.startswith(("error: recipe.yaml has unknown keys", "hint: ")) for e in errors)


def test_a_reward_error_is_reported_by_its_rank(monkeypatch, caplog):
    from posttrain.cli import report_user_error
    from rewards.contract import RewardContractError

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    report_user_error(RewardContractError("reward 'exact' returned 3 values for 4 completions"))
    assert [r.getMessage() for r in caplog.records] == [
        "error: [rank 3] reward 'exact' returned 3 values for 4 completions",
        "hint: posttrain --debug (or POSTTRAIN_DEBUG=1) shows the reward's traceback.",
    ]


def test_the_command_exits_2_without_a_traceback(tmp_path):
    """The installed entry point, as a user runs it: the last line is the error, the status 2."""
    (tmp_path / "recipe.yaml").write_text("method: grpo\nlearning_rate: fast\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("POSTTRAIN_DEBUG", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    }
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [sys.executable, "-m", "posttrain", "validate", "recipe.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert re.search(
        r"error: recipe.yaml has wrong values:\n\s+learning_rate in recipe.yaml \(line 2\)", output
    )


@pytest.mark.slow
def test_a_launch_of_two_processes_prints_bad_input_once(tiny_model, offline_cache, tmp_path):
    """Under accelerate launch both processes stop on the bad recipe with status 2; the error shows once."""
    (case,) = [c for c in CASES if c.bad_input == "Missing dataset column"]
    (tmp_path / "recipe.yaml").write_text(recipe_text(case, tiny_model))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("POSTTRAIN_DEBUG", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    }
    env["PYTHONPATH"] = str(REPO)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file"]
    command += [
        str(REPO / "accelerate_configs" / "cpu_zero3.yaml"),
        "-m",
        "posttrain",
        "train",
        "recipe.yaml",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    # The launcher's report: every process that got to exit by itself exited with 2 (it stops the rest).
    codes = re.findall(r"exitcode\s*: (-?\d+)", output)
    assert "2" in codes and set(codes) <= {"2", "-15"}, output
    errors = [line for line in output.splitlines() if "error: recipe.yaml cannot run" in line]
    assert len(errors) == 1 and says(errors[0], case.message)
    assert not (tmp_path / "out").exists()
