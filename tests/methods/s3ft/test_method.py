"""S3FT as a method: the target rule, its recipe checks, and its data stage (sources and composition, resuming
without loss or duplicates, two ranks building what one builds, a folder of other settings refused), plus a
short run that trains on the built set."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from posttrain.methods.s3ft.data import TARGET_STAGE, choose_target, reference_prompt
from posttrain.recipe import RecipeError, load_recipe
from posttrain.stages import StageContext, StageError, _fingerprint, run_stage

# Accepts the answers to questions whose number is a multiple of 3; the rest are rejected.
THIRDS_JUDGE = """
def every_third(completions, question, **kwargs):
    return [int(int(q.split()[-1]) % 3 == 0) for q in question]
"""
# For the stand-in model below: accepts its own answer to questions 0, 3, 6, ..., and an answer that says the gold
# except to questions 2, 5, 8, ...: the three target sources in turn.
MIXED_JUDGE = """
def own_thirds_or_gold(completions, question, answer, **kwargs):
    verdicts = []
    for completion, q, gold in zip(completions, question, answer):
        text = completion[-1]["content"]  # chat prompts get chat completions, as TRL gives rewards
        number = int(q.split()[-1])
        verdicts.append(int(text.startswith("own") and number % 3 == 0 or gold in text and number % 3 == 1))
    return verdicts
"""


def write_recipe(tmp_path: Path, model: Path | str, rows: int = 8, **fields) -> Path:
    data = tmp_path / "questions.jsonl"
    data.write_text(
        "".join(json.dumps({"question": f"question {i}", "answer": f"gold{i}"}) + "\n" for i in range(rows))
    )
    (tmp_path / "judges.py").write_text(THIRDS_JUDGE + MIXED_JUDGE)
    config = {
        "method": "s3ft",
        "model_name_or_path": str(model),
        "dataset_name": str(data),
        "prompt_template": "Answer: {question}",
        "gold_template": "The answer is {answer}.",
        "judge": "judges.py:every_third",
        "answer_max_new_tokens": 4,
        "output_dir": str(tmp_path / "out"),
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        **fields,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def stage_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]


def source_rows(recipe):
    from posttrain.data import load_recipe_splits

    return load_recipe_splits(recipe.data, recipe.builder, seed=recipe.trainer.seed)["train"]


@pytest.mark.parametrize(
    ("rule", "own_ok", "para_ok", "expected"),
    [
        ("s3ft", True, None, ("own", "own")),
        ("s3ft", False, True, ("para", "paraphrase")),
        ("s3ft", False, False, ("gold", "gold")),
        ("s3ft", None, None, ("gold", "gold")),  # neither judged (no gold to judge against)
        ("sft", True, True, ("gold", "gold")),
        ("sdft", True, False, ("para", "paraphrase")),  # the rewrite whatever the judge says
    ],
)
def test_the_target_rule(rule, own_ok, para_ok, expected):
    assert choose_target(rule, "gold", "own", own_ok, "para", para_ok) == expected


def test_an_empty_answer_is_never_a_target():
    assert choose_target("s3ft", "gold", "", True, "", True) == ("gold", "gold")
    assert choose_target("sdft", "gold", None, None, "", None) == ("gold", "gold")


def test_the_reference_prompt_rewrites_the_request_only():
    template = "{prompt} | ref: {reference}"
    chat = [{"role": "system", "content": "sys"}, {"role": "user", "content": "Q?"}]
    assert reference_prompt(template, chat, "G") == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "Q? | ref: G"},
    ]
    assert chat[-1]["content"] == "Q?"  # the task prompt itself is unchanged
    assert reference_prompt(template, "Q?", "G") == "Q? | ref: G"


def test_recipe_checks(tiny_model, tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, tiny_model))
    assert recipe.method.name == "s3ft" and recipe.trainer.target_rule == "s3ft"
    for fields, message in [
        ({"completion_template": "{answer}"}, "move completion_template"),
        ({"gold_template": ""}, "needs gold_template"),
        ({"target_rule": "dpo"}, "target_rule must be one of s3ft, sft, sdft"),
        ({"judge": "qa_contain"}, "judge: .*qa_contains"),
        ({"reference_prompt": "{prompt} only"}, "reference_prompt must contain {reference}"),
        ({"prompt_format": "raw"}, "set prompt_format to chat"),
        ({"judge_kwargs": "{not json"}, "judge_kwargs is not a JSON object"),
    ]:
        with pytest.raises(RecipeError, match=message):
            load_recipe(write_recipe(tmp_path, tiny_model, **fields))


def test_validate_checks_the_judges_and_the_golds_columns_before_the_stage_runs(tiny_model, tmp_path, caplog):
    from posttrain.cli import main

    assert main(["validate", str(write_recipe(tmp_path, tiny_model))]) == 0
    caplog.clear()
    assert main(["validate", str(write_recipe(tmp_path, tiny_model, gold_template="{solution}"))]) == 2
    assert "'solution'" in caplog.text


class StandIn(StageContext):
    """A model stand-in: 'own <question>' to a task prompt; the reference itself when shown one."""

    def generate(self, prompts, sampling, expected_rows=None):
        self._loaded.setdefault("prompts", []).extend(prompts)
        out = []
        for prompt in prompts:
            text = prompt[-1]["content"]
            said = (
                text.split("A reference answer: ")[1].split("\n")[0] if "reference" in text else f"own {text}"
            )
            out.append([said])
        return out


def test_each_rule_picks_its_sources_and_the_summary_counts_them(tiny_model, tmp_path):
    """9 rows. The stand-in answers 'own ...' and, shown the reference, repeats it; the judge accepts own answers to
    questions 0, 3, 6 and the gold to questions 1, 4, 7, so S3FT's sources cycle own, paraphrase, gold."""
    expected = {
        "s3ft": ["own", "paraphrase", "gold"] * 3,
        "sft": ["gold"] * 9,
        "sdft": ["paraphrase"] * 9,  # the rewrite, whatever the judge says
    }
    asked_again = {"s3ft": 6, "sft": 0, "sdft": 9}
    for rule, sources in expected.items():
        recipe = load_recipe(
            write_recipe(tmp_path, tiny_model, rows=9, target_rule=rule, judge="judges.py:own_thirds_or_gold")
        )
        folder = tmp_path / rule
        context = StandIn(recipe=recipe)
        run_stage(TARGET_STAGE, source_rows(recipe), folder, context, _fingerprint(recipe, TARGET_STAGE))
        built = stage_rows(folder)
        assert [r["target_source"] for r in built] == sources
        asked = context._loaded.get("prompts", [])
        own_asked = 9 if rule == "s3ft" else 0
        assert len(asked) == own_asked + asked_again[rule]
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["sources"] == {s: sources.count(s) for s in ("own", "paraphrase", "gold")}
        assert summary["rows"] == 9
    s3ft = stage_rows(tmp_path / "s3ft")
    assert [r["completion"][0]["content"] for r in s3ft[:3]] == [
        "own Answer: question 0",
        "The answer is gold1.",  # the stand-in's rewrite, accepted
        "The answer is gold2.",  # the gold (the rewrite says the same here, but was rejected)
    ]
    assert s3ft[0]["paraphrase"] is None and s3ft[0]["own_correct"] == 1  # accepted rows are not asked again
    assert s3ft[2]["paraphrase_correct"] == 0 and s3ft[2]["own_correct"] == 0
    summary = json.loads((tmp_path / "s3ft" / "summary.json").read_text())
    assert summary["own_accuracy"] == pytest.approx(3 / 9)
    assert summary["paraphrase_accepted"] == pytest.approx(3 / 6) and summary["paraphrases"] == 6
    sdft = stage_rows(tmp_path / "sdft")
    assert sdft[4]["own_answer"] is None and sdft[4]["completion"][0]["content"] == "The answer is gold4."


def hf_context(recipe, **fields) -> StageContext:
    return StageContext(recipe=recipe, engine_name="hf", dtype="float32", **fields)


def test_the_stage_resumes_after_an_interruption_with_nothing_lost_or_duplicated(tiny_model, tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, tiny_model, rows=7))
    rows = source_rows(recipe)
    stage = dataclasses.replace(TARGET_STAGE, batch_size=3)
    fingerprint = _fingerprint(recipe, stage)
    whole = tmp_path / "whole"
    run_stage(stage, rows, whole, hf_context(recipe), fingerprint)
    built = stage_rows(whole)
    assert [r["question"] for r in built] == [f"question {i}" for i in range(7)]
    # The tiny model's answers are noise; every_third accepts rows 0, 3, 6 and rejects every rewrite.
    assert [r["target_source"] for r in built] == ["own", "gold", "gold", "own", "gold", "gold", "own"]
    assert all(isinstance(r["own_answer"], str) for r in built)

    class Interrupted(Exception):
        pass

    calls = {"n": 0}

    def crash_on_second_batch(rows, context):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupted
        return TARGET_STAGE.run(rows, context)

    resumed = tmp_path / "resumed"
    with pytest.raises(Interrupted):
        run_stage(
            dataclasses.replace(stage, run=crash_on_second_batch),
            rows,
            resumed,
            hf_context(recipe),
            fingerprint,
        )
    assert len((resumed / "part-rank0.jsonl").read_text().splitlines()) == 3  # the first batch only
    run_stage(stage, rows, resumed, hf_context(recipe), fingerprint)
    indices = [json.loads(line)["index"] for line in (resumed / "part-rank0.jsonl").read_text().splitlines()]
    assert sorted(indices) == list(range(7))  # every row once
    assert stage_rows(resumed) == built


def test_two_ranks_build_the_same_dataset_as_one(tiny_model, tmp_path, monkeypatch):
    """Rank 1 of 2 runs first (it only writes its part), then rank 0 (its part, then the merge); the barrier that
    would make them wait for each other is the only thing left out."""
    import posttrain.stages

    recipe = load_recipe(write_recipe(tmp_path, tiny_model, rows=7))
    rows = source_rows(recipe)
    stage = dataclasses.replace(TARGET_STAGE, batch_size=2)
    fingerprint = _fingerprint(recipe, stage)
    one = tmp_path / "one"
    run_stage(stage, rows, one, hf_context(recipe), fingerprint)
    monkeypatch.setattr(posttrain.stages, "_barrier", lambda world, timeout_s: None)
    two = tmp_path / "two"
    for rank in (1, 0):
        run_stage(stage, rows, two, hf_context(recipe, rank=rank, world_size=2), fingerprint)
    for rank in (0, 1):
        part = [
            json.loads(line)["index"] for line in (two / f"part-rank{rank}.jsonl").read_text().splitlines()
        ]
        assert part == [i for i in range(7) if i % 2 == rank]
    assert stage_rows(two) == stage_rows(one)
    assert json.loads((two / "summary.json").read_text()) == json.loads((one / "summary.json").read_text())


def test_a_stage_folder_built_under_another_rule_or_judge_is_refused(tiny_model, tmp_path):
    from posttrain.stages import run_stages

    recipe = load_recipe(write_recipe(tmp_path, tiny_model, rows=4, target_rule="sft"))
    folder = run_stages(recipe)
    (folder / "stage.json").unlink()  # not complete: it would resume
    for override in (["--target_rule", "sdft"], ["--judge", "judges.py:own_thirds_or_gold"]):
        other = load_recipe(tmp_path / "recipe.yaml", override)
        with pytest.raises(StageError, match="different run"):
            run_stages(other)


@pytest.mark.slow
def test_s3ft_builds_its_targets_and_trains_on_them(tiny_model, tmp_path):
    from posttrain.train import train
    from tests.conftest import weights_changed

    path = write_recipe(
        tmp_path,
        tiny_model,
        rows=6,
        max_steps=3,
        learning_rate=1e-2,
        per_device_train_batch_size=2,
        logging_steps=1,
        lr_scheduler_type="constant",
    )
    results = train(load_recipe(path))
    out = tmp_path / "out"
    assert weights_changed(tiny_model, out)
    summary = json.loads((out / "stages" / "targets" / "summary.json").read_text())
    assert summary["sources"]["own"] == 2 and summary["rows"] == 6  # every_third accepts questions 0 and 3
    assert [entry["loss"] for entry in results["log_history"] if "loss" in entry]


@pytest.mark.slow
def test_the_cpu_recipes_run_end_to_end(tiny_model, offline_cache, tmp_path):
    """The shipped S3FT CPU recipe on a tiny model and the fixture's language questions: targets, LoRA training and
    the held-out check."""
    from posttrain.train import train
    from tests.conftest import adapter_trained

    recipe_path = Path(__file__).parents[3] / "recipes" / "s3ft" / "s3ft_qa_language_cpu.yaml"
    overrides = ["--model_name_or_path", str(tiny_model), "--output_dir", str(tmp_path / "out")]
    overrides += [
        "--max_train_samples",
        "6",
        "--max_steps",
        "2",
        "--heldout_samples",
        "4",
        "--save_steps",
        "2",
    ]
    overrides += ["--answer_max_new_tokens", "4", "--learning_rate", "1e-2"]
    train(load_recipe(recipe_path, overrides))
    out = tmp_path / "out"
    assert adapter_trained(out)
    built = stage_rows(out / "stages" / "targets")
    assert len(built) == 6 and {row["target_source"] for row in built} <= {"own", "paraphrase", "gold"}
    summary = json.loads((out / "stages" / "targets" / "summary.json").read_text())
    assert sum(summary["sources"].values()) == 6
