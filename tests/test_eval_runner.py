"""`posttrain eval`: samples, summary, resume without duplicates or gaps, comparisons, calibration, processes
that meet in a process group, and the errors a user meets first."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from eval.runner import EvalArguments, read_samples, run_eval, sample_line
from eval.summary import summarize_samples, write_comparison
from posttrain.cli import main
from posttrain.configs import DataArguments
from posttrain.generation import HFEngine
from posttrain.methods.cls_rl.config import ClassificationArguments

TEMPLATE = "{question}\nGive the final number as '#### <number>'."


def data_args(**overrides) -> DataArguments:
    return DataArguments(**{"dataset_name": "gsm_symbolic", "prompt_template": TEMPLATE, **overrides})


def eval_args(model: Path, out: Path, **overrides) -> EvalArguments:
    settings = {
        "model_name_or_path": str(model),
        "scorers": ["numeric_answer", "numeric_answer_format"],
        "answer_parser": "number",
        "max_samples": 6,
        "max_new_tokens": 4,
        "chunk_size": 2,
        "engine": "hf",
        # float32: the random tiny model's near-uniform logits would let bfloat16 noise flip samples between
        # batchings, and these tests compare runs that batch differently.
        "dtype": "float32",
        "output_dir": str(out),
    }
    return EvalArguments(**{**settings, **overrides})


# Scorers for the multi-process tests: rank 1 is slow to finish, or fails.
RANK_SCORERS = """
import os
import time


def slow_on_rank1(completions, **kwargs):
    if os.environ.get("RANK") == "1":
        time.sleep(5)
    return [float(len(c) % 2) for c in completions]


def crash_on_rank1(completions, **kwargs):
    if os.environ.get("RANK") == "1":
        raise RuntimeError("rank 1 breaks")
    return [0.0 for _ in completions]
"""


def test_eval_writes_samples_and_summary(tiny_model, offline_cache, tmp_path):
    results = run_eval(eval_args(tiny_model, tmp_path, n=2, temperature=1.0), data_args())
    summary = results[tiny_model.name]
    rows = read_samples(tmp_path / "samples.jsonl")
    assert sorted(rows) == list(range(6))
    assert all(len(r["completions"]) == 2 and len(r["scores"]["numeric_answer"]) == 2 for r in rows.values())
    assert {"pass@1", "pass@2", "maj@2", "mean@2", "mean_reward/numeric_answer"} <= set(summary)
    assert summary["prompts"] == 6
    assert json.loads((tmp_path / "summary.json").read_text())["prompts"] == 6


def test_interrupted_eval_resumes_to_the_same_summary(tiny_model, offline_cache, tmp_path):
    full = run_eval(eval_args(tiny_model, tmp_path / "full"), data_args())[tiny_model.name]

    out = tmp_path / "resumed"
    run_eval(eval_args(tiny_model, out), data_args())
    samples = out / "samples.jsonl"
    lines = samples.read_text().splitlines()
    # Keep two rows and half of the third, as a crash in the middle of a write leaves it.
    samples.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][: len(lines[2]) // 2])
    (out / "summary.json").unlink()
    resumed = run_eval(eval_args(tiny_model, out), data_args())[tiny_model.name]

    indices = [json.loads(line)["index"] for line in samples.read_text().splitlines()]
    assert sorted(indices) == list(range(6))  # no duplicates, no gaps
    assert resumed == full


def test_resumed_sampled_eval_rechunked_gives_the_same_rows(tiny_model, offline_cache, tmp_path):
    """Samples depend on the seed, prompt and sample index only: a resumed run that batches differently writes
    the rows an uninterrupted run writes."""
    sampled = {"n": 2, "temperature": 1.0, "max_new_tokens": 6}
    run_eval(eval_args(tiny_model, tmp_path / "full", chunk_size=6, **sampled), data_args())
    out = tmp_path / "resumed"
    run_eval(eval_args(tiny_model, out, chunk_size=2, **sampled), data_args())
    samples = out / "samples.jsonl"
    lines = samples.read_text().splitlines()
    samples.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][:10])
    (out / "summary.json").unlink()
    run_eval(eval_args(tiny_model, out, chunk_size=3, **sampled), data_args())
    full = read_samples(tmp_path / "full" / "samples.jsonl")
    resumed = read_samples(samples)
    assert {i: r["completions"] for i, r in resumed.items()} == {i: r["completions"] for i, r in full.items()}
    assert len({c for r in full.values() for c in r["completions"]}) > 6


def test_resume_after_a_torn_last_line_reproduces_the_uninterrupted_run(tiny_model, offline_cache, tmp_path):
    """A prompt's samples depend on the seed and the prompt only: a run killed mid-write and resumed with other
    chunks writes the rows, and so the summary, of a run that was never interrupted."""
    sampled = {"n": 3, "temperature": 1.0, "max_new_tokens": 6}
    full = run_eval(eval_args(tiny_model, tmp_path / "full", chunk_size=4, **sampled), data_args())
    out = tmp_path / "resumed"
    run_eval(eval_args(tiny_model, out, chunk_size=4, **sampled), data_args())
    samples = out / "samples.jsonl"
    lines = samples.read_text().splitlines()
    # Four rows whole and the fifth torn. Resumed in chunks of 3, prompts 4 and 5 are generated in a batch with
    # prompt 3 and at other positions than in the first run.
    samples.write_text("".join(line + "\n" for line in lines[:4]) + lines[4][:25])
    (out / "summary.json").unlink()
    resumed = run_eval(eval_args(tiny_model, out, chunk_size=3, **sampled), data_args())
    assert read_samples(samples) == read_samples(tmp_path / "full" / "samples.jsonl")
    assert resumed == full
    completions = [c for row in read_samples(samples).values() for c in row["completions"]]
    assert len(set(completions)) > 6  # sampled, not greedy: the samples could have come out otherwise


def test_a_complete_last_row_without_its_newline_is_kept(tiny_model, offline_cache, tmp_path):
    """A file that ends in a whole row but no newline gets the newline before rows are appended, so the next
    row does not land on the same line (where both were lost)."""
    full = run_eval(eval_args(tiny_model, tmp_path / "full"), data_args())[tiny_model.name]
    out = tmp_path / "resumed"
    out.mkdir()
    lines = (tmp_path / "full" / "samples.jsonl").read_text().splitlines()
    samples = out / "samples.jsonl"
    samples.write_text("\n".join(lines[:3]))  # three whole rows, the last without its newline
    resumed = run_eval(eval_args(tiny_model, out), data_args())[tiny_model.name]
    text = samples.read_text()
    assert text.endswith("\n") and text.splitlines()[:3] == lines[:3]
    assert sorted(json.loads(line)["index"] for line in text.splitlines()) == list(range(6))
    assert resumed == full


def test_read_samples_repairs_only_what_is_broken(tmp_path):
    rows = [{"index": i, "completions": [f"answer {i}"]} for i in range(3)]
    path = tmp_path / "samples.jsonl"
    whole = [json.dumps(row) for row in rows]
    path.write_text("\n".join(whole))  # the last row whole, no final newline
    assert sorted(read_samples(path, repair=True)) == [0, 1, 2]
    assert path.read_text() == "".join(line + "\n" for line in whole)
    path.write_text(whole[0] + "\n" + whole[1] + "\n" + whole[2][:-3])  # torn: dropped
    assert sorted(read_samples(path, repair=True)) == [0, 1]
    assert path.read_text() == whole[0] + "\n" + whole[1] + "\n"
    accented = sample_line({"index": 2, "completions": ["café"]}).encode()
    path.write_bytes(
        whole[0].encode() + b"\n" + accented[: accented.index("é".encode()) + 1]
    )  # mid-character
    assert sorted(read_samples(path, repair=True)) == [0]
    assert path.read_text() == whole[0] + "\n"
    path.write_text("")
    assert read_samples(path, repair=True) == {} and path.read_text() == ""


def test_rows_with_unicode_line_separators_survive_a_resume(tmp_path):
    """JSON leaves U+2028, U+2029 and U+0085 unescaped; the reader splits rows on newlines only, or such a row
    would be read as torn and dropped on every resume."""
    row = {"index": 0, "completions": ["one\u2028two\u2029three\x85four\rfive"]}
    path = tmp_path / "samples.jsonl"
    path.write_text(sample_line(row) + "\n", encoding="utf-8")
    assert read_samples(path, repair=True) == {0: row}
    assert path.read_text(encoding="utf-8") == sample_line(row) + "\n"


class RecordingEngine(HFEngine):
    """An HF engine that records the prompts of every generate call."""

    calls: list[list[str]]

    def generate(self, prompts, sampling, desc=None):
        self.calls.append(list(prompts))
        return super().generate(prompts, sampling, desc)


def test_resume_mid_chunk_regenerates_the_whole_chunk(tiny_model, offline_cache, tmp_path):
    """A chunk that was partly written is generated whole again: the engine sees the batches of the first run,
    so even bfloat16 samples, which another batching changes, come out the same."""
    engine = RecordingEngine(str(tiny_model), dtype="bfloat16")
    settings = {"n": 2, "temperature": 1.0, "max_new_tokens": 6, "chunk_size": 4, "dtype": "bfloat16"}
    engine.calls = []
    run_eval(eval_args(tiny_model, tmp_path / "full", **settings), data_args(), engine=engine)
    first_run = engine.calls
    assert [len(call) for call in first_run] == [4, 2]
    full = (tmp_path / "full" / "samples.jsonl").read_text().splitlines()
    out = tmp_path / "resumed"
    out.mkdir()
    (out / "samples.jsonl").write_text("".join(line + "\n" for line in full[:3]))  # 3 of the first chunk's 4
    engine.calls = []
    run_eval(eval_args(tiny_model, out, **settings), data_args(), engine=engine)
    assert engine.calls == first_run
    resumed = read_samples(out / "samples.jsonl")
    assert sorted(resumed) == list(range(6))
    assert resumed == read_samples(tmp_path / "full" / "samples.jsonl")


def test_comparison_of_several_models(tiny_model, offline_cache, tmp_path):
    models = [{"model": str(tiny_model), "label": "a"}, {"model": str(tiny_model), "label": "b"}]
    results = run_eval(eval_args(tiny_model, tmp_path, models=models, max_samples=2), data_args())
    assert set(results) == {"a", "b"}
    table = json.loads((tmp_path / "comparison.json").read_text())
    assert table["a"] == table["b"]  # the same model, greedy: identical scores
    assert (tmp_path / "comparison.png").stat().st_size > 0


def test_calibration_summary_and_reliability_diagram(tmp_path):
    # Two prompts, two samples each; confidences stated for three samples.
    rows = [
        {"scores": {"acc": [1.0, 0.0]}, "answers": ["a", "b"], "confidences": [0.9, 0.8]},
        {"scores": {"acc": [1.0, 1.0]}, "answers": ["c", "c"], "confidences": [0.3, None]},
    ]
    args = EvalArguments(model_name_or_path="m", scorers=["x"], n=2, temperature=1.0, confidence=True)
    summary = summarize_samples(rows, args, tmp_path, "m")
    assert summary["confidence_stated"] == pytest.approx(0.75)
    # Bins: 0.9 (correct) and 0.8 (wrong) in separate bins, 0.3 (correct): |1-.9|+|0-.8|+|1-.3| = 1.6 over 3.
    assert summary["ece"] == pytest.approx(1.6 / 3)
    assert summary["brier"] == pytest.approx((0.01 + 0.64 + 0.49) / 3)
    assert (tmp_path / "reliability.png").stat().st_size > 0


def strict_json(text: str):
    """JSON as a strict reader takes it: a bare NaN or Infinity is an error."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def calibration_rows(correct: float) -> list[dict]:
    return [
        {
            "scores": {"acc": [correct, correct]},
            "answers": ["a", "a"],
            "confidences": [0.9, 0.6],
            "group": "x",
        },
        {"scores": {"acc": [None, None]}, "answers": [None, None], "confidences": [None, None], "group": "y"},
    ]


@pytest.mark.parametrize(("correct", "verdict"), [(1.0, "correct"), (0.0, "wrong")])
def test_undefined_metrics_are_null_with_a_reason(tmp_path, correct, verdict):
    args = EvalArguments(
        model_name_or_path="m", scorers=["x"], n=2, temperature=1.0, confidence=True, group_by="g"
    )
    summary = summarize_samples(calibration_rows(correct), args, tmp_path, "m")
    assert summary["auroc"] is None
    assert (
        summary["notes"]["auroc"] == f"AUROC undefined: all 2 answers that state a confidence are {verdict}"
    )
    assert summary["ece"] == pytest.approx(abs(correct - 0.75))  # defined metrics stay numbers
    group_y = summary["groups"]["y"]
    assert group_y["mean@2"] is None and "no sample was scored" in group_y["notes"]["mean@2"]
    assert group_y["mean_reward/acc"] is None and "acc" in group_y["notes"]["mean_reward/acc"]
    assert strict_json(json.dumps(summary)) == summary


def test_no_stated_confidence_is_noted(tmp_path):
    rows = [{"scores": {"acc": [1.0]}, "answers": ["a"], "confidences": [None]}]
    args = EvalArguments(model_name_or_path="m", scorers=["x"], confidence=True)
    summary = summarize_samples(rows, args, tmp_path, "m")
    assert summary["confidence_stated"] == 0.0 and "ece" not in summary
    assert summary["notes"] == {"calibration": "no sample stated a confidence: no ECE, Brier or AUROC"}


def test_comparison_keeps_a_metric_undefined_for_one_model(tmp_path):
    results = {"a": {"pass@1": 0.5, "auroc": None}, "b": {"pass@1": 0.25, "auroc": 0.75}}
    write_comparison(results, tmp_path)
    assert strict_json((tmp_path / "comparison.json").read_text()) == results


def test_summary_json_is_strict_json(tiny_model, offline_cache, tmp_path):
    """A scorer that scores nothing leaves mean@n undefined: summary.json holds null and says why, not NaN."""
    (tmp_path / "unscored.py").write_text(
        "def unscored(completions, **kwargs):\n    return [None] * len(completions)\n"
    )
    args = eval_args(tiny_model, tmp_path / "out", scorers=["unscored.py:unscored"], max_samples=2)
    summary = run_eval(args, data_args(), base_dir=tmp_path)[tiny_model.name]
    written = strict_json((tmp_path / "out" / "summary.json").read_text())
    assert written == summary
    assert written["mean@1"] is None and written["mean_reward/unscored"] is None
    assert set(written["notes"]) == {"mean@1", "mean_reward/unscored"}


def test_unknown_scorer_fails_before_generation(tiny_model, offline_cache, tmp_path):
    with pytest.raises(ValueError, match="numeric_answr"):
        run_eval(eval_args(tiny_model, tmp_path, scorers=["numeric_answr"]), data_args())
    assert not (tmp_path / "samples.jsonl").exists()


def test_missing_dataset_column_is_named(tiny_model, offline_cache, tmp_path):
    with pytest.raises(ValueError, match="missing column.*'problem'"):
        run_eval(eval_args(tiny_model, tmp_path), data_args(prompt_template="{problem}"))


def test_prompt_longer_than_context(tiny_model, offline_cache, tmp_path):
    with pytest.raises(ValueError, match="do not fit the model's context of 1024 tokens"):
        run_eval(eval_args(tiny_model, tmp_path, max_new_tokens=1020), data_args())


def test_model_that_does_not_load(offline_cache, tmp_path):
    with pytest.raises(OSError):
        run_eval(eval_args(tmp_path / "no-such-model", tmp_path / "out"), data_args())


def test_eval_from_the_command_line(tiny_model, offline_cache, tmp_path):
    flags = ["--model_name_or_path", str(tiny_model), "--dataset_name", "gsm_symbolic"]
    flags += ["--prompt_template", "{question}", "--scorers", "numeric_answer", "--engine", "hf"]
    flags += ["--max_samples", "2", "--max_new_tokens", "2", "--output_dir", str(tmp_path)]
    assert main(["eval", *flags]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["prompts"] == 2


def test_n_samples_at_temperature_zero_is_refused():
    with pytest.raises(ValueError, match="identical"):
        EvalArguments(model_name_or_path="m", n=4, temperature=0.0)


@pytest.mark.slow
def test_embedded_model_on_real_math_with_both_engines(offline_cache, tmp_path):
    from posttrain.models import ensure_embedded_model

    model = ensure_embedded_model("smollm2-135m-instruct")
    summaries = {}
    for engine in ("vllm", "hf"):
        args = eval_args(model, tmp_path / engine, engine=engine, max_samples=8, max_new_tokens=48)
        summaries[engine] = run_eval(args, data_args())[model.name]
    rows = {e: read_samples(tmp_path / e / "samples.jsonl") for e in summaries}
    for engine, summary in summaries.items():
        assert summary["prompts"] == 8
        scores = [row["scores"]["numeric_answer"][0] for row in rows[engine].values()]
        assert summary["mean_reward/numeric_answer"] == pytest.approx(sum(scores) / len(scores))
    # Greedy decoding in bf16 (vLLM on CPU) and float32 (HF): the first words mostly agree.
    agree = sum(
        rows["vllm"][i]["completions"][0].split()[:3] == rows["hf"][i]["completions"][0].split()[:3]
        for i in range(8)
    )
    assert agree >= 4


def _dp_config(model: Path, tmp_path: Path, name: str, scorer: str, **extra) -> Path:
    """An evaluation YAML (torchrun's own parser would take flags such as --n for its own)."""
    (tmp_path / "rank_scorers.py").write_text(RANK_SCORERS)
    config = {
        "model_name_or_path": str(model),
        "dataset_name": "gsm_symbolic",
        "prompt_template": TEMPLATE,
        "scorers": ["numeric_answer", "numeric_answer_format", f"rank_scorers.py:{scorer}"],
        "answer_parser": "number",
        "max_samples": 6,
        "max_new_tokens": 4,
        "chunk_size": 2,
        "n": 2,
        "temperature": 1.0,
        "engine": "hf",
        "dtype": "float32",
        "output_dir": str(tmp_path / name),
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_data_parallel_ranks_split_prompts_and_rank0_summarises(tiny_model, offline_cache, tmp_path):
    """Two processes under torchrun; rank 1 finishes late and a marker file an old run left means nothing."""
    config = _dp_config(tiny_model, tmp_path, "dp", "slow_on_rank1")
    args = eval_args(tiny_model, tmp_path / "single", n=2, temperature=1.0)
    args.scorers = [*args.scorers, "rank_scorers.py:slow_on_rank1"]
    single = run_eval(args, data_args(), base_dir=tmp_path)[tiny_model.name]
    dp = tmp_path / "dp"
    dp.mkdir()
    (dp / "done.rank1").write_text("")  # what the marker-file protocol of earlier versions left behind
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    subprocess.run([*launch, "-m", "posttrain", "eval", str(config)], check=True, timeout=600)
    assert sorted(read_samples(dp / "samples.rank0.jsonl")) == [0, 2, 4]
    assert sorted(read_samples(dp / "samples.rank1.jsonl")) == [1, 3, 5]
    assert json.loads((dp / "summary.json").read_text()) == single  # sampled rows do not depend on the rank


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_crashed_rank_fails_the_others_instead_of_hanging(tiny_model, offline_cache, tmp_path):
    """Processes started by hand (no torchrun to tear the job down): rank 0 must not wait for rank 1 for ever."""
    config = _dp_config(tiny_model, tmp_path, "dp", "crash_on_rank1", rank_timeout_minutes=30)
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    started = time.monotonic()
    ranks = [
        subprocess.Popen(
            [sys.executable, "-m", "posttrain", "eval", str(config)],
            env={**env, "RANK": str(rank)},
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    errors = [p.communicate(timeout=600)[1] for p in ranks]
    assert [p.returncode != 0 for p in ranks] == [True, True]
    assert "rank 1 breaks" in errors[1]
    assert "another rank of this evaluation failed" in errors[0]
    assert time.monotonic() - started < 300  # well under the 30-minute timeout
    assert not (tmp_path / "dp" / "summary.json").exists()


def test_world_size_without_a_rendezvous_is_explained(tiny_model, offline_cache, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(RuntimeError, match="torchrun or accelerate launch"):
        run_eval(eval_args(tiny_model, tmp_path), data_args())
    # One process of a larger job can still evaluate alone.
    summary = run_eval(eval_args(tiny_model, tmp_path), data_args(), distributed=False)[tiny_model.name]
    assert summary["prompts"] == 6


def test_classification_eval_reports_each_group(tiny_model, offline_cache, tmp_path):
    """Base-to-new classification prompts built by the data builder, scored per class group."""
    data = DataArguments(
        dataset_name="intent_recognition",
        data_builder="classification",
        prompt_template="{text}\nChoose one of: {classes}.",
    )
    classes = ClassificationArguments(label_column="label", base_to_new=True)
    args = eval_args(
        tiny_model,
        tmp_path,
        scorers=["cls_contains", "cls_equality"],
        answer_parser="text",
        group_by="class_group",
    )
    summary = run_eval(args, data, classes)[tiny_model.name]
    rows = read_samples(tmp_path / "samples.jsonl")
    assert {row["group"] for row in rows.values()} <= {"base", "new"}
    groups = summary["groups"]
    assert sum(g["prompts"] for g in groups.values()) == summary["prompts"] == 6
    for name, group in groups.items():
        members = [row for row in rows.values() if row["group"] == name]
        expected = sum(row["scores"]["cls_contains"][0] for row in members) / len(members)
        assert group["mean_reward/cls_contains"] == pytest.approx(expected)


def test_each_engine_made_for_a_model_is_released_before_the_next_starts(
    tiny_model, offline_cache, tmp_path, monkeypatch
):
    """An evaluation of several models holds one engine at a time (vLLM's cache stayed allocated after ``del``:
    three models peaked at 16.6 GB, one engine's worth is 8.9 GB); an engine passed in is its owner's to close."""
    import eval.runner as runner

    events: list[str] = []

    class ClosingEngine(HFEngine):
        def close(self):
            events.append(f"close {self.label}")

    def make(name, model_path, **kwargs):
        engine = ClosingEngine(model_path)
        engine.label = f"engine {len(events) // 2}"
        events.append(f"make {engine.label}")
        return engine

    monkeypatch.setattr(runner, "make_engine", make)
    models = [{"model": str(tiny_model), "label": "a"}, {"model": str(tiny_model), "label": "b"}]
    run_eval(eval_args(tiny_model, tmp_path / "pair", models=models, max_samples=2), data_args())
    assert events == ["make engine 0", "close engine 0", "make engine 1", "close engine 1"]
    events.clear()
    mine = ClosingEngine(str(tiny_model))
    mine.label = "passed in"
    run_eval(eval_args(tiny_model, tmp_path / "mine", max_samples=2), data_args(), engine=mine)
    assert events == []
