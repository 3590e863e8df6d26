"""ConfTuner as a method: its recipe checks, its data stage (answers, verdicts, summary, resuming), and a short run
that trains a tiny model to state a higher confidence where its answers are right."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import yaml

from posttrain.methods.conftuner.data import ANSWER_STAGE
from posttrain.recipe import RecipeError, load_recipe
from posttrain.stages import StageContext, _fingerprint, run_stage

# Marks the rows whose question number is odd correct: a verdict a tiny random model can learn from the prompt.
PARITY_JUDGE = """
def odd_question(completions, question, **kwargs):
    return [int(q.split()[-1]) % 2 for q in question]
"""


def write_recipe(tmp_path: Path, model: Path | str, rows: int = 8, **fields) -> Path:
    data = tmp_path / "questions.jsonl"
    data.write_text(
        "".join(json.dumps({"question": f"question {i}", "answer": "x"}) + "\n" for i in range(rows))
    )
    (tmp_path / "judges.py").write_text(PARITY_JUDGE)
    config = {
        "method": "conftuner",
        "model_name_or_path": str(model),
        "dataset_name": str(data),
        "prompt_template": "Answer: {question}",
        "judge": "judges.py:odd_question",
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


def test_recipe_checks(tiny_model, tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, tiny_model))
    assert recipe.method.name == "conftuner"
    assert recipe.trainer.judge == "judges.py:odd_question"
    for fields, message in [
        ({"completion_template": "{answer}"}, "remove completion_template"),
        ({"packing": True}, "packing and padding_free"),
        ({"judge": "qa_contain"}, "judge: .*qa_contains"),
        ({"answer_lm_loss_weight": -1.0}, "answer_lm_loss_weight"),
    ]:
        with pytest.raises(RecipeError, match=message):
            load_recipe(write_recipe(tmp_path, tiny_model, **fields))


def test_validate_checks_the_judges_columns_before_the_stage_runs(tiny_model, tmp_path, caplog):
    from posttrain.cli import main

    assert main(["validate", str(write_recipe(tmp_path, tiny_model))]) == 0
    # A judge reading a column the source data lacks fails before any answer is generated.
    (tmp_path / "gold_judge.py").write_text("def needs_gold(completions, gold, **kwargs):\n    return [0]\n")
    path = write_recipe(tmp_path, tiny_model, judge="gold_judge.py:needs_gold")
    assert main(["validate", str(path)]) == 2
    assert "'gold'" in caplog.text


def stage_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]


def test_answer_stage_writes_verdicts_and_resumes_without_duplicates(tiny_model, tmp_path):
    from posttrain.data import load_recipe_splits

    recipe = load_recipe(write_recipe(tmp_path, tiny_model, rows=7))
    rows = load_recipe_splits(recipe.data, recipe.builder, seed=recipe.trainer.seed)["train"]
    stage = dataclasses.replace(ANSWER_STAGE, batch_size=3)
    fingerprint = _fingerprint(recipe, stage)

    whole = tmp_path / "whole"
    run_stage(stage, rows, whole, StageContext(recipe=recipe, engine_name="hf", dtype="float32"), fingerprint)
    built = stage_rows(whole)
    assert [r["question"] for r in built] == [f"question {i}" for i in range(7)]
    assert [r["correct"] for r in built] == [i % 2 for i in range(7)]
    assert all(isinstance(r["completion"], str) and "Confidence" not in r["completion"] for r in built)
    summary = json.loads((whole / "summary.json").read_text())
    assert summary["rows"] == 7 and summary["per_label"] == {"1": 3, "0": 4}
    assert summary["accuracy"] == pytest.approx(3 / 7)

    class Interrupted(Exception):
        pass

    calls = {"n": 0}

    def crash_on_second_batch(rows, context):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupted
        return ANSWER_STAGE.run(rows, context)

    resumed = tmp_path / "resumed"
    crashing = dataclasses.replace(stage, run=crash_on_second_batch)
    context = StageContext(recipe=recipe, engine_name="hf", dtype="float32")
    with pytest.raises(Interrupted):
        run_stage(crashing, rows, resumed, context, fingerprint)
    assert len((resumed / "part-rank0.jsonl").read_text().splitlines()) == 3  # the first batch only
    run_stage(stage, rows, resumed, context, fingerprint)
    indices = [json.loads(line)["index"] for line in (resumed / "part-rank0.jsonl").read_text().splitlines()]
    assert sorted(indices) == list(range(7))  # every row once
    assert stage_rows(resumed) == built


@pytest.mark.slow
def test_conftuner_trains_confidence_towards_its_verdicts(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.methods.conftuner.loss import confidence_forward, confidence_scale
    from posttrain.train import train
    from tests.conftest import weights_changed

    path = write_recipe(
        tmp_path,
        tiny_model,
        max_steps=30,
        learning_rate=3e-3,
        per_device_train_batch_size=8,
        logging_steps=5,
        lr_scheduler_type="constant",
    )
    results = train(load_recipe(path))
    out = tmp_path / "out"
    assert weights_changed(tiny_model, out)
    summary = json.loads((out / "stages" / "answers" / "summary.json").read_text())
    assert summary["per_label"] == {"1": 4, "0": 4}
    logged = [entry for entry in results["log_history"] if "brier" in entry]
    assert logged and logged[-1]["brier"] < logged[0]["brier"]

    # The trained model's confidence after its own answers: higher where the judge said right.
    tokenizer = AutoTokenizer.from_pretrained(out)
    scale = confidence_scale(tokenizer)
    built = stage_rows(out / "stages" / "answers")
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": f"Answer: {row['question']}"}],
            tokenize=False,
            add_generation_prompt=True,
        )
        + scale.example_tail(row["completion"])
        for row in built
    ]
    for name, model_dir in (("before", tiny_model), ("after", out)):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        batch = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            q = torch.softmax(
                confidence_forward(model, batch["input_ids"], batch["attention_mask"], scale), -1
            )
        stated = (q @ scale.values()).tolist()
        right = [c for c, row in zip(stated, built, strict=True) if row["correct"]]
        wrong = [c for c, row in zip(stated, built, strict=True) if not row["correct"]]
        gap = sum(right) / len(right) - sum(wrong) / len(wrong)
        if name == "before":
            assert abs(gap) < 0.05  # a random model states about the same confidence everywhere
        else:
            assert gap > 0.5


@pytest.mark.slow
def test_the_cpu_recipe_runs_end_to_end(tiny_model, offline_cache, tmp_path):
    """The shipped CPU recipe on a tiny model and the fixture's language questions: answers, verdicts, LoRA
    training, the held-out check, and the evaluation with the cued and the logit-based confidence."""
    from posttrain.train import train
    from tests.conftest import adapter_trained

    recipe_path = Path(__file__).parents[3] / "recipes" / "conftuner" / "qa_language_cpu.yaml"
    overrides = ["--model_name_or_path", str(tiny_model), "--output_dir", str(tmp_path / "out")]
    overrides += [
        "--max_train_samples",
        "8",
        "--max_steps",
        "2",
        "--heldout_samples",
        "4",
        "--save_steps",
        "2",
    ]
    overrides += ["--answer_max_new_tokens", "4", "--learning_rate", "1e-2"]
    results = train(load_recipe(recipe_path, overrides))
    out = tmp_path / "out"
    assert adapter_trained(out)
    built = stage_rows(out / "stages" / "answers")
    assert len(built) == 8 and all(
        row["question"].startswith(("The language", "The official")) for row in built
    )
    summary = json.loads((out / "stages" / "answers" / "summary.json").read_text())
    assert summary["rows"] == 8 and summary["per_label"]["1"] == sum(row["correct"] for row in built)
    evaluation = results["evaluation"]
    assert evaluation["prompts"] == 7  # every held-out language question of the fixture
    assert evaluation["logit_confidence"] == "mean" and "logit_brier" in evaluation
    assert (out / "eval" / "final" / "reliability_logit.png").exists()
