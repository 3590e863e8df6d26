"""Training-time markers as a method: recipe checks, the annotate stages, the collator (the completion always
carries every marker, the prompt this epoch's draw, the loss only the completion), the mixture builder, the eval
hook, and a short run that trains a tiny model on its stage's output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from transformers import AutoTokenizer

from posttrain.methods.markers.annotate import MARKERS_COLUMN
from posttrain.methods.markers.schema import DEFAULT_SCHEMA, parse_output, render_markers
from posttrain.methods.markers.trainer import ROW_KEY, MarkerCollator, marked_completion
from posttrain.recipe import RecipeError, load_recipe

FIXTURES = Path(__file__).parents[2] / "fixtures"
REPO = Path(__file__).parents[3]
SCHEMA_FREE = [
    "domain",
    "task",
    "format",
    "source",
    "code_language",
    "length_tokens",
    "length_sentences",
    "length_paragraphs",
    "length_bucket",
]


def write_recipe(tmp_path: Path, model: Path | str, rows: int = 12, **fields) -> Path:
    data = tmp_path / "rows.jsonl"
    lines = []
    for i in range(rows):
        math_row = i % 2 == 0
        lines.append(
            {
                "instruction": f"{'Add' if math_row else 'Name'} item {i}",
                "response": f"{i} plus {i} is {2 * i}. Done." if math_row else f"```python\nprint({i})\n```",
                "domain": "Math" if math_row else "Code",
                "task": "Math reasoning" if math_row else "Code generation",
                "level": "easy" if i < 6 else "hard",
            }
        )
    data.write_text("".join(json.dumps(r) + "\n" for r in lines))
    config = {
        "method": "markers",
        "model_name_or_path": str(model),
        "dataset_name": str(data),
        "data_builder": None,
        "prompt_template": "{instruction}",
        "completion_template": "{response}",
        "markers": SCHEMA_FREE,
        "extra_markers": ["level"],
        "output_dir": str(tmp_path / "out"),
        "use_cpu": True,
        "report_to": "none",
        "save_strategy": "no",
        **fields,
    }
    config = {k: v for k, v in config.items() if v is not None}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(FIXTURES / "tokenizer")


def test_recipe_checks(tiny_model, tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, tiny_model))
    assert recipe.method.name == "markers" and recipe.trainer.extra_markers == ["level"]
    for fields, message in [
        ({"completion_template": ""}, "needs completion_template"),
        ({"dataset_dropout": 1.5}, "dataset_dropout must be a share"),
        ({"sample_dropout": -0.1}, "sample_dropout must be a share"),
        ({"markers": ["domian"]}, "unknown marker"),
        ({"extra_markers": ["domain"]}, "given twice"),
        ({"length_bucket_edges": [64, 16, 256]}, "three increasing"),
        ({"packing": True}, "packing"),
        ({"quality_scorer": "numeric_answr"}, "quality_scorer: .*numeric_answer"),
        ({"markers": ["quality"]}, "quality_scorer is not set"),
    ]:
        with pytest.raises(RecipeError, match=message):
            load_recipe(write_recipe(tmp_path, tiny_model, **fields))


def test_validate_finds_a_missing_extra_marker_column_before_annotation(tiny_model, tmp_path, caplog):
    from posttrain.cli import main

    assert main(["validate", str(write_recipe(tmp_path, tiny_model))]) == 0
    assert main(["validate", str(write_recipe(tmp_path, tiny_model, extra_markers=["audience"]))]) == 2
    assert "'audience'" in caplog.text


def _row(markers: dict, key: int = 0) -> dict:
    return {
        "prompt": [{"role": "user", "content": "What is 2+2?"}],
        "completion": [{"role": "assistant", "content": "#### 4"}],
        MARKERS_COLUMN: json.dumps(markers),
        ROW_KEY: key,
    }


MARKERS = {"domain": "Math", "task": "Math reasoning", "length_tokens": 5, "length_bucket": "tiny"}


def _decode_labels(tokenizer, batch, row: int) -> str:
    labels = batch["labels"][row]
    return tokenizer.decode(labels[labels != -100])


def test_the_completion_always_carries_every_marker_and_the_loss_only_it(tokenizer):
    collator = MarkerCollator(tokenizer, schema=DEFAULT_SCHEMA, dataset_rate=0.5, sample_rate=0.9, seed=0)
    full = render_markers(MARKERS)
    rows = [_row(MARKERS, key) for key in range(40)]
    shown_counts = set()
    for epoch in range(3):
        collator.epoch = epoch
        batch = collator(rows)
        for i in range(len(rows)):
            target = _decode_labels(tokenizer, batch, i)
            # the labelled tokens are exactly the marked answer and the end of the turn
            assert target.startswith(full + "\n#### 4"), target
            prompt_ids = batch["input_ids"][i][batch["labels"][i] == -100]
            prompt = tokenizer.decode(prompt_ids[batch["attention_mask"][i][batch["labels"][i] == -100] == 1])
            assert "What is 2+2?" in prompt
            shown = (
                parse_output(prompt[prompt.find("<MARKER_LIST>") :]).markers
                if "<MARKER_LIST>" in prompt
                else {}
            )
            assert all(MARKERS[k] == v or str(MARKERS[k]) == v for k, v in shown.items())
            shown_counts.add(len(shown))
    # over 120 draws the prompt showed no list, part of it, and (rarely, at sample_rate 0.9) more than one marker
    assert 0 in shown_counts and 1 in shown_counts
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape


def test_the_collator_draws_afresh_each_epoch(tokenizer):
    collator = MarkerCollator(tokenizer, schema=DEFAULT_SCHEMA, dataset_rate=0.5, sample_rate=0.5, seed=1)
    rows = [_row(MARKERS, key) for key in range(32)]
    prompts = {}
    for epoch in (0, 1, 0):
        collator.epoch = epoch
        prompts.setdefault(epoch, []).append([collator.texts(r)[0] for r in rows])
    assert prompts[0][0] == prompts[0][1]  # the same epoch draws the same
    assert prompts[0][0] != prompts[1][0]


def test_marked_completion_and_raw_prompts(tokenizer):
    assert marked_completion({}, "x") == "x"
    assert (
        marked_completion({"domain": "Math"}, "x")
        == "<MARKER_LIST> <domain> Math </domain> </MARKER_LIST>\nx"
    )
    collator = MarkerCollator(tokenizer, schema=DEFAULT_SCHEMA, dataset_rate=0.0, sample_rate=0.0, seed=0)
    prompt, full = collator.texts(
        {"prompt": "Q:", "completion": " A", MARKERS_COLUMN: {"domain": "Math"}, ROW_KEY: 0}
    )
    assert prompt == "Q:\n<MARKER_LIST> <domain> Math </domain> </MARKER_LIST>"
    assert full == prompt + "<MARKER_LIST> <domain> Math </domain> </MARKER_LIST>\n A"


def test_the_mixture_keeps_each_sources_metadata_and_splits(offline_cache):
    from posttrain.data import load_any
    from posttrain.methods.markers.data import MixtureArguments, build_mixture

    args = MixtureArguments(
        mixture_sources=["humaneval", "qa_wikidata", "intent_recognition"],
        rows_per_source=5,
        test_rows_per_source=3,
    )
    built = build_mixture(load_any("gsm_symbolic"), args)
    assert len(built["train"]) == 20 and len(built["test"]) == 12
    rows = built["train"].to_list()
    by_source = {r["source"]: r for r in rows}
    assert sorted(by_source) == ["gsm_symbolic", "humaneval", "intent_recognition", "qa_wikidata"]
    assert (
        by_source["gsm_symbolic"]["task"] == "Math reasoning" and by_source["humaneval"]["domain"] == "Code"
    )
    assert by_source["humaneval"]["response"].startswith("```python\n")
    assert by_source["intent_recognition"]["format"] == "Label"
    assert by_source["qa_wikidata"]["gold"] == by_source["qa_wikidata"]["response"]
    assert not {r["instruction"] for r in rows} & set(built["test"]["instruction"])
    with pytest.raises(ValueError, match="unknown source"):
        MixtureArguments(mixture_sources=["hotpotqa"])


def test_task_accuracy_scores_each_row_by_its_task():
    from posttrain.methods.markers.rewards import task_accuracy

    scores = task_accuracy(
        ["so #### 12", "#### 13", "It is Paris.", "play_music", "get_weather or play_music", "def f(): pass"],
        gold=["12", "12", "Paris", "play_music", "play_music", "f"],
        source=[
            "gsm_symbolic",
            "gsm_symbolic",
            "qa_wikidata",
            "intent_recognition",
            "intent_recognition",
            "humaneval",
        ],
        task=[
            "Math reasoning",
            "Math reasoning",
            "Question answering",
            "Classification",
            "Classification",
            "Code generation",
        ],
    )
    assert scores == [1.0, 0.0, 1.0, 1.0, 0.0, None]


def test_eval_hook_loads_and_rejects_bad_entries():
    from eval.runner import load_inference_hook

    hook = load_inference_hook(
        {
            "name": "posttrain.methods.markers.inference:markers_mode",
            "kwargs": {"mode": "fixed", "markers": {"domain": "Math"}},
        }
    )
    assert hook.prompt("q", {}) == "q\n<MARKER_LIST> <domain> Math </domain> </MARKER_LIST>"
    assert load_inference_hook(None) is None
    for bad, message in [
        ("posttrain.methods.markers.inference", "names no factory"),
        ("posttrain.methods.markers.inference:nope", "does not load"),
        (
            {"name": "posttrain.methods.markers.inference:markers_mode", "kwargs": {"mode": "steer"}},
            "one of inferred",
        ),
        ({"name": "x:y", "extra": 1}, "is 'package.module:factory'"),
    ]:
        with pytest.raises(ValueError, match=message):
            load_inference_hook(bad)


@pytest.mark.slow
def test_annotate_stage_then_training_changes_the_model(tiny_model, tmp_path):
    from posttrain.train import train
    from tests.conftest import weights_changed

    # A quality scorer of the user's: the answer's length in characters, so the quartiles are known.
    (tmp_path / "scorers.py").write_text(
        "def answer_length(completions, **kwargs):\n"
        "    return [float(len(c if isinstance(c, str) else c[-1]['content'])) for c in completions]\n"
    )
    path = write_recipe(
        tmp_path,
        tiny_model,
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        max_length=256,
        markers=[*SCHEMA_FREE, "quality_bucket"],
        quality_scorer="scorers.py:answer_length",
    )
    results = train(load_recipe(path))
    out = tmp_path / "out"
    assert weights_changed(tiny_model, out)
    rows = [
        json.loads(line)
        for line in (out / "stages" / "quality_buckets" / "train.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 12
    first = json.loads(rows[0][MARKERS_COLUMN])
    assert first["domain"] == "Math" and first["level"] == "easy" and first["length_sentences"] == 2
    code = json.loads(rows[1][MARKERS_COLUMN])
    assert code["code_language"] == "Python" and code["length_bucket"] == "tiny"
    # quality itself was not asked for: only its quartile is kept
    from posttrain.methods.markers.annotate import quality_bucket, quartile_edges

    lengths = [float(len(row["response"])) for row in rows]
    edges = quartile_edges(lengths)
    buckets = [json.loads(row[MARKERS_COLUMN]) for row in rows]
    assert [b["quality_bucket"] for b in buckets] == [quality_bucket(x, edges) for x in lengths]
    assert len({b["quality_bucket"] for b in buckets}) > 1 and not any("quality" in b for b in buckets)
    summary = json.loads((out / "stages" / "quality_buckets" / "summary.json").read_text())
    assert summary["present"]["domain"] == 12 and summary["values"]["domain"] == {"Math": 6, "Code": 6}
    assert results["log_history"]


class ScriptedEngine:
    """An engine that answers every prompt with a fixed marked output and records the prompts it was sent."""

    def __init__(self, tokenizer, output: str):
        self.tokenizer = tokenizer
        self.output = output
        self.prompts: list[str] = []
        self.last_tokens = 0

    def context_length(self) -> int:
        return 2048

    def generate(self, prompts, sampling, desc=None):
        self.prompts += list(prompts)
        return [[self.output] * sampling.n for _ in prompts]


@pytest.mark.parametrize("mode", ["inferred", "fixed"])
def test_posttrain_eval_strips_the_list_scores_the_answer_and_keeps_the_record(tokenizer, tmp_path, mode):
    from eval.runner import EvalArguments, run_eval
    from posttrain.configs import DataArguments

    data = tmp_path / "data"
    data.mkdir()
    rows = [
        {"question": "What is 2+2?", "answer": "4", "domain": "Math"},
        {"question": "3+3?", "answer": "6", "domain": "Math"},
    ]
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    output = "<MARKER_LIST> <domain> Math </domain> <length_tokens> 3 </length_tokens> </MARKER_LIST>\n#### 4"
    engine = ScriptedEngine(tokenizer, output)
    kwargs = (
        {"mode": mode}
        if mode == "inferred"
        else {"mode": mode, "markers": {"length_bucket": "tiny"}, "columns": ["domain"]}
    )
    args = EvalArguments(
        model_name_or_path="unused",
        scorers=["numeric_answer", "numeric_answer_format"],
        max_new_tokens=8,
        inference={"name": "posttrain.methods.markers.inference:markers_mode", "kwargs": kwargs},
        output_dir=str(tmp_path / "out"),
    )
    (summary,) = run_eval(
        args, DataArguments(dataset_name=str(data), prompt_template="{question}"), engine=engine
    ).values()
    written = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert [r["completions"] for r in written] == [["#### 4"], ["#### 4"]]
    assert [r["raw_completions"] for r in written] == [[output], [output]]
    assert written[0]["inference"] == [
        {"markers": {"domain": "Math", "length_tokens": "3"}, "status": "ok", "repeated": False}
    ]
    assert summary["mean_reward/numeric_answer"] == 0.5  # "#### 4" is right for 2+2, wrong for 3+3
    sent = "<MARKER_LIST> <domain> Math </domain> <length_bucket> tiny </length_bucket> </MARKER_LIST>"
    assert all((sent in p) == (mode == "fixed") for p in engine.prompts)


def test_python_api_sends_fixed_markers_per_prompt_and_reads_answers(tokenizer):
    from posttrain.generation import Sampling
    from posttrain.methods.markers.inference import generate_marked

    output = "<MARKER_LIST> <domain> Math </domain> </MARKER_LIST>\n#### 4"
    engine = ScriptedEngine(tokenizer, output)
    prompts = [[{"role": "user", "content": "2+2?"}], [{"role": "user", "content": "3+3?"}]]
    inferred = generate_marked(engine, prompts, sampling=Sampling(n=2, temperature=1.0))
    assert [len(group) for group in inferred] == [2, 2]
    assert inferred[0][0].answer == "#### 4" and inferred[0][0].markers == {"domain": "Math"}
    assert "<MARKER_LIST>" not in engine.prompts[0]
    generate_marked(engine, prompts, [{"length_bucket": "tiny"}, None])
    assert (
        "<length_bucket> tiny </length_bucket>" in engine.prompts[2]
        and "<MARKER_LIST>" not in engine.prompts[3]
    )
    with pytest.raises(ValueError, match="one per prompt"):
        generate_marked(engine, prompts, [{"domain": "Math"}])
