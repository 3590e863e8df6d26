"""The data-stage runner: sharded by rank, resumable after SIGKILL with nothing lost or duplicated, and a stage
folder from another run is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from posttrain.stages import StageError, read_part

FIXTURES = Path(__file__).parent / "fixtures"
DRIVER = """
import sys
sys.path.insert(0, {fixtures!r})
import plugin_method  # registers the method
from posttrain.cli import main
sys.exit(main(sys.argv[1:]))
"""


def setup(tmp_path: Path, rows: int = 20) -> tuple[Path, Path]:
    data = tmp_path / "questions.jsonl"
    questions = [f"skip {i}" if i % 7 == 6 else f"question {i}" for i in range(rows)]
    data.write_text("".join(json.dumps({"question": q}) + "\n" for q in questions))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "method": "shout_sft",
                "model_name_or_path": "unused-by-this-stage",
                "dataset_name": str(data),
                "prompt_template": "{question}",
                "completion_template": "{answer}",
                "output_dir": str(tmp_path / "out"),
                "use_cpu": True,
                "report_to": "none",
            }
        )
    )
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(fixtures=str(FIXTURES)))
    return recipe, driver


# What torchrun sets; a run of one process must not inherit them from the test process (or an earlier test).
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    return subprocess.run(
        command,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).parent,
    )


def merged(tmp_path: Path) -> list[dict]:
    lines = (tmp_path / "out" / "stages" / "shout" / "train.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def expected(rows: int = 20) -> list[str]:
    return [f"QUESTION {i}" for i in range(rows) if i % 7 != 6]


@pytest.mark.slow
def test_stage_shards_rows_over_two_processes(tmp_path):
    recipe, driver = setup(tmp_path)
    done = run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            str(driver),
            "stage",
            str(recipe),
        ]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = merged(tmp_path)
    assert [r["answer"] for r in rows] == expected()
    # Each rank wrote the rows of its own indices, and only those.
    folder = tmp_path / "out" / "stages" / "shout"
    for rank in (0, 1):
        part = read_part(folder / f"part-rank{rank}.jsonl")
        assert part and all(index % 2 == rank for index in part)
        assert all(row is None or row["rank"] == rank for row in part.values())


def test_killed_stage_resumes_with_nothing_lost_or_duplicated(tmp_path):
    recipe, driver = setup(tmp_path)
    killed = run([sys.executable, str(driver), "stage", str(recipe)], KILL_STAGE_AFTER="2")
    assert killed.returncode == -9
    part = tmp_path / "out" / "stages" / "shout" / "part-rank0.jsonl"
    assert len(part.read_text().splitlines()) == 6  # two batches of 3 were written before the kill
    with part.open("a") as f:
        f.write('{"index": 6, "row": {"quest')  # a write torn by the kill
    resumed = run([sys.executable, str(driver), "stage", str(recipe)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["answer"] for r in merged(tmp_path)] == expected()
    indices = [json.loads(line)["index"] for line in part.read_text().splitlines()]
    assert sorted(indices) == list(range(20))  # every row once: none lost, none twice


def test_stage_folder_of_another_run_is_refused(tmp_path):
    from posttrain.recipe import load_recipe
    from posttrain.stages import run_stages

    sys.path.insert(0, str(FIXTURES))
    import plugin_method  # noqa: F401

    recipe_path, _ = setup(tmp_path)
    run_stages(load_recipe(recipe_path))
    (tmp_path / "out" / "stages" / "shout" / "stage.json").unlink()  # not complete: it would resume
    other = load_recipe(recipe_path, ["--prompt_template", "Q: {question}"])
    with pytest.raises(StageError, match="different run"):
        run_stages(other)


def test_read_part_cuts_a_torn_line_and_ends_a_complete_one(tmp_path):
    part = tmp_path / "part.jsonl"
    part.write_text('{"index": 0, "row": {"a": 1}}\n{"index": 1, "row": null}')
    assert read_part(part) == {0: {"a": 1}, 1: None}
    assert part.read_text().endswith("\n")
    part.write_text('{"index": 0, "row": {"a": 1}}\n{"index": 1, "ro')
    assert read_part(part) == {0: {"a": 1}}
    assert part.read_text() == '{"index": 0, "row": {"a": 1}}\n'


def test_a_stage_generates_with_the_shared_service(tiny_model, tmp_path):
    from posttrain.generation import Sampling, generate_greedy
    from posttrain.recipe import load_recipe
    from posttrain.stages import StageContext

    recipe_path, _ = setup(tmp_path, rows=3)
    sys.path.insert(0, str(FIXTURES))
    import plugin_method  # noqa: F401

    recipe = load_recipe(recipe_path, ["--model_name_or_path", str(tiny_model)])
    # float32, prompts of one length: no padding, so batching cannot move the logits either.
    context = StageContext(recipe=recipe, engine_name="hf", dtype="float32")
    prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(3)]
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=6)
    got = context.generate(prompts, greedy)
    engine = context._loaded["engine"]
    assert [g[0] for g in got] == generate_greedy(engine.model, engine.tokenizer, prompts, max_new_tokens=6)
    # Sampled: a prompt's samples do not depend on which batch it came in.
    sampled = Sampling(n=2, temperature=1.0, max_new_tokens=6, seed=3)
    together = context.generate(prompts, sampled)
    alone = [context.generate([p], sampled)[0] for p in reversed(prompts)][::-1]
    assert together == alone


def test_a_complete_stage_writes_its_summary(tmp_path):
    from posttrain.recipe import load_recipe
    from posttrain.stages import run_stages

    sys.path.insert(0, str(FIXTURES))
    import plugin_method  # noqa: F401

    recipe_path, _ = setup(tmp_path)
    run_stages(load_recipe(recipe_path))
    summary = json.loads((tmp_path / "out" / "stages" / "shout" / "summary.json").read_text())
    assert summary == {"rows": len(expected()), "ranks": [0]}


def test_validate_sees_the_columns_a_stage_will_write(tmp_path, caplog):
    """The recipe's completion template reads 'answer', which only the stage writes: validation passes before the
    stage has run, and still names a column the stage's input lacks."""
    from posttrain.cli import main

    sys.path.insert(0, str(FIXTURES))
    import plugin_method  # noqa: F401

    recipe, _ = setup(tmp_path)
    assert main(["validate", str(recipe)]) == 0
    assert not (tmp_path / "out" / "stages").exists()  # validating ran no stage
    assert main(["validate", str(recipe), "--prompt_template", "{topic}"]) == 2
    assert "'topic'" in caplog.text and "data stages" in caplog.text
