"""Training-time markers on this CPU: marker inference, length control and task accuracy of the embedded model
trained with markers, against the same SFT without them; the cost of annotation and serialisation.

    python benchmarks/markers.py [--rows-per-source 24] [--test-rows-per-source 16] [--epochs 2] [--out DIR]

Phases, each in a process of its own (wall time and peak resident memory reported), resumable like
``benchmarks/conftuner.py``'s (finished phases are kept in ``phases.json``; a stopped ``posttrain`` command goes on
from its checkpoints and samples):

1. ``posttrain stage`` of ``recipes/markers/mixture_cpu.yaml``: the mixture's training rows annotated.
2. Three trainings on those rows: markers with dataset-level dropout 0.5 (the paper's), markers without it (0.0),
   and the baseline, ``recipes/markers/mixture_baseline_cpu.yaml`` (the same SFT, no markers).
3. ``posttrain eval`` on the mixture's held-out rows (written once to ``heldout/test.jsonl`` with their reference
   markers), greedy:
   - both marker models in inferred mode: the markers they write for domain, task and length bucket against the
     reference's, and task accuracy of the answer with the list stripped;
   - the baseline as it is: task accuracy;
   - length control: the dropout-0.5 marker model in fixed mode with ``length_tokens`` set to the reference
     answer's length, against the baseline asked in plain words ("Answer in about N words.", N the reference's
     words): the share of answers more than 25% off the asked length, each in the unit it was asked in.
4. The step overhead, in a process of its own: one batch of annotated rows, LoRA, under bfloat16 autocast as the
   trainings run (float32 with ``--no-bf16``). Annotation of the batch's rows
   and the collator's serialisation and tokenization, timed alone, against a plain SFT step (forward and backward
   on the same rows without markers); and the markers step against the plain one (its sequences are longer by the
   marker tokens). Medians of alternating repeats after a warm-up.

With ``--side-by-side`` the three trainings run at once, then the five evaluations: on a shared machine the legs
then meet the same load, and the run takes about a third of the time.

Prints the tables and writes ``table.md``, ``table.json`` and ``length_control.png`` (asked against produced
length) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

sys.path.insert(
    0, str(Path(__file__).resolve().parent)
)  # the shared phase runner (phases.py) beside this script
from phases import Phases, begin, lora_model, run_phase  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "markers" / "mixture_cpu.yaml"
BASELINE = REPO / "recipes" / "markers" / "mixture_baseline_cpu.yaml"
INFERRED = {"name": "posttrain.methods.markers.inference:markers_mode", "kwargs": {"mode": "inferred"}}
FIXED_LENGTH = {
    "name": "posttrain.methods.markers.inference:markers_mode",
    "kwargs": {"mode": "fixed", "columns": ["length_tokens"]},
}
SCORER = "posttrain.methods.markers.rewards:task_accuracy"
INFERRED_MARKERS = ("domain", "task", "length_bucket")
# The benchmark's models learn the markers it measures, and format: a list of ~45 tokens instead of the recipe's
# ~100 (source, language, code language, sentence and paragraph counts), so that the run fits in 30 minutes.
BENCH_MARKERS = ("domain", "task", "format", "length_tokens", "length_bucket")
TOLERANCE = 0.25

logger = logging.getLogger("benchmark")


def run_side_by_side(record: Phases, jobs: dict[str, tuple[list[str], Path]]) -> list[dict]:
    """Run the phases of ``jobs`` (name -> (argv, log)) at once, each in its own process: legs that share the
    machine's load alike, so their times compare. Phases done in an earlier run are skipped."""
    todo = {name: job for name, job in jobs.items() if name not in record.records}
    with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
        futures = {name: pool.submit(run_phase, name, argv, log) for name, (argv, log) in todo.items()}
        for name, future in futures.items():
            record.records[name] = future.result()
            record.path.write_text(json.dumps(record.records, indent=2))
    return [record.records[name] for name in jobs]


def run_all(record: Phases, jobs: dict[str, tuple[list[str], Path]], side_by_side: bool) -> list[dict]:
    if side_by_side:
        return run_side_by_side(record, jobs)
    return [record.run(name, argv, log) for name, (argv, log) in jobs.items()]


def write_recipe(source: Path, path: Path, **fields) -> Path:
    config = yaml.safe_load(source.read_text())
    config.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=True))
    return path


def heldout_rows(recipe_path: Path, out: Path) -> Path:
    """The mixture's test rows with their reference markers and the plain-words length request, as a dataset
    folder ``posttrain eval`` reads."""
    from transformers import AutoTokenizer

    from posttrain.data import load_recipe_splits
    from posttrain.methods.markers.annotate import count_tokens, length_bucket
    from posttrain.models import resolve_model_path
    from posttrain.recipe import load_recipe

    folder = out / "heldout"
    if (folder / "test.jsonl").exists():
        return folder
    recipe = load_recipe(recipe_path)
    splits = load_recipe_splits(recipe.data, recipe.builder, seed=recipe.trainer.seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(recipe.model.model_name_or_path))
    edges = recipe.trainer.length_bucket_edges
    rows = []
    for row in splits["test"]:
        tokens = count_tokens(row["response"], tokenizer)
        rows.append(
            {
                **row,
                "length_tokens": tokens,
                "length_words": max(1, len(row["response"].split())),
                "length_bucket": length_bucket(tokens, edges),
            }
        )
    folder.mkdir(parents=True, exist_ok=True)
    # The folder is a dataset whose test split eval reads; its train split (one row, the same columns) is unused.
    (folder / "train.jsonl").write_text(json.dumps(rows[0], ensure_ascii=False) + "\n")
    (folder / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return folder


def eval_config(
    path: Path, data: Path, out: Path, *, prompt: str, inference=None, max_new_tokens: int, engine: str
) -> Path:
    config = {
        "model_name_or_path": "smollm2-135m-instruct",
        "dataset_name": str(data),
        "dataset_test_split": "test",
        "prompt_template": prompt,
        "max_new_tokens": max_new_tokens,
        "n": 1,
        "temperature": 0.0,
        "seed": 0,
        "answer_parser": "none",
        "engine": engine,
        "group_by": "task",
        "scorers": [SCORER],
        "output_dir": str(out),
    }
    if inference is not None:
        config["inference"] = inference
    path.write_text(yaml.safe_dump(config, sort_keys=True))
    return path


def samples(folder: Path) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines() if line]
    return sorted(rows, key=lambda r: r["index"])


def marker_accuracy(folder: Path, reference: list[dict]) -> dict:
    """Share of held-out rows whose generated marker equals the reference, per marker; and how lists parsed."""
    rows = samples(folder)
    result: dict = {}
    for name in INFERRED_MARKERS:
        hits = [r["inference"][0]["markers"].get(name) == str(reference[r["index"]][name]) for r in rows]
        result[name] = sum(hits) / len(hits)
    statuses = [r["inference"][0]["status"] for r in rows]
    result["lists"] = {s: statuses.count(s) for s in sorted(set(statuses))}
    return result


def length_control(folder: Path, reference: list[dict], unit: str, tokenizer, limit: int) -> dict:
    """Share of answers more than 25% off the asked length, in ``unit`` (tokens or words), the pairs, and how many
    outputs ran into the ``limit`` of new tokens (their answer was cut, so its length says nothing)."""
    pairs, cut = [], 0
    for row in samples(folder):
        asked = reference[row["index"]][f"length_{unit}"]
        answer = row["completions"][0]
        produced = (
            len(tokenizer(answer, add_special_tokens=False)["input_ids"])
            if unit == "tokens"
            else len(answer.split())
        )
        pairs.append((asked, produced))
        raw = row.get("raw_completions", row["completions"])[0]
        cut += len(tokenizer(raw, add_special_tokens=False)["input_ids"]) >= limit - 1
    outside = [abs(p - a) > TOLERANCE * a for a, p in pairs]
    return {"unit": unit, "outside_share": sum(outside) / len(outside), "pairs": pairs, "cut_at_limit": cut}


def accuracy(metrics: dict) -> str:
    value = metrics.get("mean_reward/task_accuracy")
    return "n/a" if value is None else f"{value:.3f}"


def step_overhead(recipe_path: Path, stage_rows: Path, repeats: int, max_length: int, bf16: bool) -> dict:
    """Annotation + serialisation of one batch against a plain SFT step on the same rows (see the docstring)."""
    import torch

    from posttrain.generation import render_prompt
    from posttrain.methods.markers.annotate import annotate_rows
    from posttrain.methods.markers.schema import DEFAULT_SCHEMA
    from posttrain.methods.markers.trainer import MarkerCollator
    from posttrain.models import conversation_text
    from posttrain.recipe import load_recipe
    from posttrain.stages import StageContext

    recipe = load_recipe(recipe_path)
    config = yaml.safe_load(recipe_path.read_text())
    tokenizer, model = lora_model(config)
    batch_size = 8  # the recipe's batch: the overhead is per row, so the ratio hardly depends on it
    source = [json.loads(line) for line in stage_rows.read_text().splitlines()][:batch_size]
    raw = [{k: v for k, v in row.items() if k != "markers"} for row in source]
    examples = [
        {
            "prompt": [{"role": "user", "content": row["instruction"]}],
            "completion": [{"role": "assistant", "content": row["response"]}],
            "markers": row["markers"],
            "row_key": i,
        }
        for i, row in enumerate(source)
    ]
    collator = MarkerCollator(
        tokenizer,
        schema=DEFAULT_SCHEMA,
        dataset_rate=0.5,
        sample_rate=0.5,
        seed=0,
        max_length=max_length,
    )

    def plain_batch() -> dict:  # what SFT without markers trains on: prompt + answer, loss on the answer
        ids, labels = [], []
        for example in examples:
            prompt = render_prompt(tokenizer, example["prompt"])
            full = conversation_text(tokenizer, example["prompt"], example["completion"])
            p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            f = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
            ids.append(f)
            labels.append([-100] * len(p) + f[len(p) :])
        longest = max(map(len, ids))
        pad = tokenizer.pad_token_id
        return {
            "input_ids": torch.tensor([x + [pad] * (longest - len(x)) for x in ids]),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (longest - len(x)) for x in ids]),
            "labels": torch.tensor([x + [-100] * (longest - len(x)) for x in labels]),
        }

    plain = plain_batch()
    marked = collator(examples)
    context = StageContext(recipe=recipe)
    annotate_rows(raw[:1], context)  # loads the tokenizer once, as the stage keeps it

    def step(batch: dict) -> None:  # as the trainings run it: under bfloat16 autocast with --bf16
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch, use_cache=False).loss
        loss.backward()

    times: dict[str, list[float]] = {
        "plain SFT step": [],
        "markers SFT step": [],
        "annotation": [],
        "serialisation": [],
    }
    work = {
        "plain SFT step": lambda: step(plain),
        "markers SFT step": lambda: step(marked),
        "annotation": lambda: annotate_rows(raw, context),
        "serialisation": lambda: collator(examples),
    }
    for repeat in range(repeats + 1):
        order = list(work) if repeat % 2 == 0 else list(work)[::-1]
        for name in order:
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            work[name]()
            if repeat > 0:
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["plain SFT step"]
    return {
        "batch": f"{len(examples)} rows; plain {tuple(plain['input_ids'].shape)}, marked {tuple(marked['input_ids'].shape)} tokens",
        **{f"{name} s": value for name, value in medians.items()},
        "annotation + serialisation / plain step": (medians["annotation"] + medians["serialisation"]) / base,
        "serialisation / plain step": medians["serialisation"] / base,
        "markers step / plain step": medians["markers SFT step"] / base,
        "repeats": repeats,
        "bf16 autocast": bf16,
    }


def plot_lengths(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.5), squeeze=False)
    for axis, (label, result) in zip(axes[0], results.items(), strict=True):
        asked = [a for a, _ in result["pairs"]]
        produced = [p for _, p in result["pairs"]]
        top = max(asked + produced + [1]) * 1.05
        axis.scatter(asked, produced, s=12, alpha=0.7)
        axis.plot([0, top], [0, top], color="black", lw=1)
        axis.fill_between(
            [0, top], [0, top * (1 - TOLERANCE)], [0, top * (1 + TOLERANCE)], color="green", alpha=0.15
        )
        axis.set_xscale("symlog")
        axis.set_yscale("symlog")
        axis.set_xlabel(f"asked length ({result['unit']})")
        axis.set_ylabel(f"produced length ({result['unit']})")
        axis.set_title(f"{label}\n{result['outside_share']:.0%} outside +/-25%")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows-per-source", type=int, default=24)
    parser.add_argument("--test-rows-per-source", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--max-new-tokens", type=int, default=192, help="tokens for the answer (the longest asked is ~150)"
    )
    parser.add_argument(
        "--list-tokens",
        type=int,
        default=64,
        help="more new tokens for the marker models, whose answer follows their marker list (~45 tokens with the "
        "benchmark's markers)",
    )
    parser.add_argument("--engine", default="vllm", help="generation engine of the evaluations")
    parser.add_argument("--overhead-repeats", type=int, default=2)
    parser.add_argument(
        "--markers",
        default=",".join(BENCH_MARKERS),
        help="the markers the models learn, comma-separated (the recipe's full list makes every sequence ~50 "
        "tokens longer)",
    )
    parser.add_argument(
        "--max-length", type=int, default=384, help="tokens per training sequence (cut beyond)"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="training rows per step")
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="run the three trainings at once, then the five evaluations at once (each phase its own process)",
    )
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train under bfloat16 autocast (faster on a CPU with AVX512-BF16; --no-bf16 for float32)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "markers_bench")
    args = parser.parse_args()
    started = time.perf_counter()
    out, record = begin(args.out)
    sizes = {
        "rows_per_source": args.rows_per_source,
        "test_rows_per_source": args.test_rows_per_source,
        "num_train_epochs": args.epochs,
        "heldout_metric": None,
        "seed": args.seed,
        "stage_dir": str(out / "stages"),
        "save_steps": 1000,
        "max_length": args.max_length,
        # Rows whose prompt alone leaves under 64 tokens for the answer (long HumanEval prompts) are left out.
        "max_prompt_length": args.max_length - 64,
        "long_prompts": "drop",
        "per_device_train_batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "bf16": args.bf16,
    }
    marked = {**sizes, "markers": [m.strip() for m in args.markers.split(",") if m.strip()]}
    recipes = {
        "markers, dataset dropout 0.5": write_recipe(
            RECIPE, out / "markers-d50.yaml", output_dir=str(out / "markers-d50"), **marked
        ),
        "markers, no dataset dropout": write_recipe(
            RECIPE, out / "markers-d0.yaml", output_dir=str(out / "markers-d0"), dataset_dropout=0.0, **marked
        ),
        "baseline SFT (no markers)": write_recipe(
            BASELINE,
            out / "baseline.yaml",
            output_dir=str(out / "baseline"),
            **{k: v for k, v in sizes.items() if k != "stage_dir"},
        ),
    }
    phases = [
        record.run(
            "annotation (stage)", ["stage", str(recipes["markers, dataset dropout 0.5"])], out / "stage.log"
        )
    ]
    stage_summary = json.loads((out / "stages" / "quality_buckets" / "summary.json").read_text())
    # In a process of its own, like every phase: the model it builds would otherwise stay in this process's
    # memory, and every phase started after it would inherit that high-water mark in its reported peak.
    measured = out / "overhead.json"
    overhead_argv = [
        str(recipes["markers, dataset dropout 0.5"]),
        str(out / "stages" / "quality_buckets" / "train.jsonl"),
    ]
    overhead_argv += [str(args.overhead_repeats), str(args.max_length), str(int(args.bf16)), str(measured)]
    phases.append(
        record.run(
            "step overhead", ["overhead", *overhead_argv], out / "overhead.log", Path(__file__).resolve()
        )
    )
    overhead = json.loads(measured.read_text())
    logger.info("Step overhead: %s", overhead)
    training = {}
    jobs = {
        f"training: {label}": (["train", str(recipe)], recipe.with_suffix(".log"))
        for label, recipe in recipes.items()
    }
    phases += run_all(record, jobs, args.side_by_side)
    for label, recipe in recipes.items():
        results = json.loads(
            (Path(yaml.safe_load(recipe.read_text())["output_dir"]) / "results.json").read_text()
        )
        training[label] = results["train"]

    data = heldout_rows(recipes["markers, dataset dropout 0.5"], out)
    reference = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    evaluations = {
        "inferred: markers, dataset dropout 0.5": ("markers-d50", "{instruction}", INFERRED),
        "inferred: markers, no dataset dropout": ("markers-d0", "{instruction}", INFERRED),
        "baseline": ("baseline", "{instruction}", None),
        "length: markers, fixed length_tokens": ("markers-d50", "{instruction}", FIXED_LENGTH),
        "length: baseline, asked in words": (
            "baseline",
            "{instruction}\nAnswer in about {length_words} words.",
            None,
        ),
    }
    eval_jobs: dict[str, tuple[list[str], Path]] = {}
    for label, (model, prompt, inference) in evaluations.items():
        folder = out / "eval" / label.replace(": ", "-").replace(", ", "-").replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        config = eval_config(
            folder / "eval.yaml",
            data,
            folder,
            prompt=prompt,
            inference=inference,
            # a marker model writes its list before the answer: the answer keeps the same budget
            max_new_tokens=args.max_new_tokens + (args.list_tokens if model != "baseline" else 0),
            engine=args.engine,
        )
        argv = ["eval", str(config), "--adapter_path", str(out / model)]
        eval_jobs[f"evaluation: {label}"] = (argv, folder / "log.txt")
        evaluations[label] = folder
    phases += run_all(record, eval_jobs, args.side_by_side)

    from transformers import AutoTokenizer

    from posttrain.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("smollm2-135m-instruct"))
    inference_acc = {
        label: marker_accuracy(evaluations[f"inferred: {label}"], reference)
        for label in ("markers, dataset dropout 0.5", "markers, no dataset dropout")
    }
    summaries = {
        label: json.loads((evaluations[key] / "summary.json").read_text())
        for label, key in (
            ("markers (inferred mode), dropout 0.5", "inferred: markers, dataset dropout 0.5"),
            ("markers (inferred mode), no dataset dropout", "inferred: markers, no dataset dropout"),
            ("baseline SFT", "baseline"),
        )
    }
    marked_limit = args.max_new_tokens + args.list_tokens
    lengths = {
        "markers, fixed length_tokens": length_control(
            evaluations["length: markers, fixed length_tokens"], reference, "tokens", tokenizer, marked_limit
        ),
        "baseline, asked in words": length_control(
            evaluations["length: baseline, asked in words"],
            reference,
            "words",
            tokenizer,
            args.max_new_tokens,
        ),
        "markers, fixed length_tokens (in words)": length_control(
            evaluations["length: markers, fixed length_tokens"], reference, "words", tokenizer, marked_limit
        ),
    }

    n_test = len(reference)
    lines = [
        f"SmolLM2-135M-Instruct + LoRA on the marker_mixture ({args.rows_per_source} training rows per source, "
        f"{args.epochs} epochs, batch {args.batch_size}, lr {args.learning_rate:g}, sequences cut at "
        f"{args.max_length} tokens, seed {args.seed}); held-out split: {n_test} test rows ({args.test_rows_per_source} per "
        f"source), greedy, {args.max_new_tokens} new tokens at most.",
        "",
        "### Marker inference (inferred mode, held-out): share of rows whose generated marker equals the reference",
        "",
        "| model | " + " | ".join(INFERRED_MARKERS) + " | lists (ok / truncated / malformed / none) |",
        "|---" * (len(INFERRED_MARKERS) + 2) + "|",
    ]
    for label, acc in inference_acc.items():
        counts = acc["lists"]
        lists = " / ".join(str(counts.get(s, 0)) for s in ("ok", "truncated", "malformed", "none"))
        lines.append(
            f"| {label} | " + " | ".join(f"{acc[m]:.3f}" for m in INFERRED_MARKERS) + f" | {lists} |"
        )
    lines += ["", "### Length control (held-out): share of answers more than 25% off the asked length", ""]
    lines += [
        "| model and request | unit | outside +/-25% | outputs cut at the token limit |",
        "|---|---|---|---|",
    ]
    for label, result in lengths.items():
        lines.append(
            f"| {label} | {result['unit']} | {result['outside_share']:.3f} | {result['cut_at_limit']} of "
            f"{len(result['pairs'])} |"
        )
    lines += ["", "### Task accuracy (held-out; code rows unscored)", ""]
    tasks = sorted({t for s in summaries.values() for t in s.get("groups", {})})
    lines += ["| model | all | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 2) + "|"]
    for label, summary in summaries.items():
        groups = summary.get("groups", {})
        cells = [accuracy(groups.get(t, {})) for t in tasks]
        lines.append(f"| {label} | {accuracy(summary)} | " + " | ".join(cells) + " |")
    lines += ["", "### Training", "", "| run | train s | steps/s | final loss |", "|---|---|---|---|"]
    for label, metrics in training.items():
        lines.append(
            f"| {label} | {metrics.get('train_runtime', float('nan')):.1f} | "
            f"{metrics.get('train_steps_per_second', float('nan')):.3f} | {metrics.get('train_loss', float('nan')):.3f} |"
        )
    lines += ["", "### Step overhead (one batch, median of alternating repeats after a warm-up)", ""]
    lines += [
        f"- {key}: {value:.4f}" if isinstance(value, float) else f"- {key}: {value}"
        for key, value in overhead.items()
    ]
    lines += ["", "### Phases", "", "| phase | wall s | peak memory MB |", "|---|---|---|"]
    for phase in phases:
        lines.append(f"| {phase['phase']} | {phase['seconds']:.1f} | {phase['peak_rss_mb']:.0f} |")
    lines += [
        "",
        f"Total wall time: {time.perf_counter() - started:.0f} s (phases done in an earlier run count as measured then)",
    ]
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n")
    (out / "table.json").write_text(
        json.dumps(
            {
                "marker_inference": inference_acc,
                "length_control": lengths,
                "task_accuracy": summaries,
                "training": training,
                "overhead": overhead,
                "annotation": stage_summary,
                "phases": phases,
            },
            indent=2,
            default=str,
        )
    )
    plot_lengths({k: v for k, v in lengths.items() if "(in words)" not in k}, out / "length_control.png")


if __name__ == "__main__":
    if sys.argv[1:2] == ["overhead"]:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        recipe_path, stage_rows, repeats, max_length, bf16, result = sys.argv[2:8]
        measured = step_overhead(
            Path(recipe_path), Path(stage_rows), int(repeats), int(max_length), bf16 == "1"
        )
        Path(result).write_text(json.dumps(measured, indent=2))
    else:
        main()
