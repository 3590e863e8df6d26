"""ConfTuner on this CPU: the embedded model before and after ConfTuner, calibration in-domain and on a task it
never trained on, beside the logit-based baseline; the loss's cost; time and memory of each phase.

    python benchmarks/conftuner.py [--seeds 0 1] [--train-rows 200] [--eval-rows 200] [--out outputs/conftuner_bench]

For each seed, ``recipes/conftuner/qa_language_cpu.yaml`` runs in two commands: ``posttrain stage`` (the model
answers the training questions greedily; qa_contains judges them) and ``posttrain train`` (LoRA with the tokenized
Brier loss). Then ``posttrain eval`` scores the base model (once: greedy decoding does not depend on the seed) and
each trained adapter on qa_wikidata's held-out language questions (``recipes/eval/conftuner_qa_language.yaml``) and
on Amazon reviews (``recipes/eval/conftuner_amazon.yaml``): accuracy, the share of answers whose cued confidence
parses, ECE, Brier and AUROC of that confidence, and the same for the probability of the model's own answer (the
logit-based baseline). Each phase runs in a process of its own, whose wall time and peak resident memory are
reported. Judging is timed apart by judging the built set again.

The loss's cost: on one batch of the built set, forward and backward of the ConfTuner loss against TRL's plain
next-token loss on the same sequences (LoRA, float32), alternating, after a warm-up; the median of each.

Prints the tables and writes ``table.md``, ``table.json`` and ``reliability.png`` (reliability diagrams side by
side) into ``--out``. Stopped, it resumes when run again with the same ``--out``: finished phases are kept with
their measured cost, and an interrupted one continues from what it wrote (stage rows, checkpoints, samples).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import yaml
from phases import REPO, Phases, begin, cell, lora_model

RECIPE = REPO / "recipes" / "conftuner" / "qa_language_cpu.yaml"
EVALS = {
    "language QA (in-domain)": REPO / "recipes" / "eval" / "conftuner_qa_language.yaml",
    "Amazon reviews (unseen task)": REPO / "recipes" / "eval" / "conftuner_amazon.yaml",
}
COLUMNS = (
    ("accuracy", "pass@1"),
    ("conf. parsed", "confidence_stated"),
    ("mean conf.", "mean_confidence"),
    ("ECE", "ece"),
    ("Brier", "brier"),
    ("AUROC", "auroc"),
    ("logit ECE", "logit_ece"),
    ("logit Brier", "logit_brier"),
    ("logit AUROC", "logit_auroc"),
)

logger = logging.getLogger("benchmark")


def seed_recipe(seed: int, out: Path, train_rows: int) -> Path:
    """The shipped recipe for one seed: its own output folder, ``train_rows`` questions, no held-out check or
    evaluation (the benchmark evaluates every model alike)."""
    config = yaml.safe_load(RECIPE.read_text())
    config.update(
        output_dir=str(out), seed=seed, max_train_samples=train_rows, heldout_metric=None, evaluation=None
    )
    path = out.parent / f"recipe-seed{seed}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=True))
    return path


def evaluate(
    label: str, adapter: Path | None, out: Path, eval_rows: int, engine: str, phases: Phases
) -> tuple[dict, list]:
    """Every evaluation of one model: its summaries by task, and the phases' costs."""
    summaries, costs = {}, []
    for task, config in EVALS.items():
        target = out / "eval" / label / config.stem
        argv = ["eval", str(config), "--output_dir", str(target), "--max_samples", str(eval_rows)]
        argv += ["--engine", engine]
        if adapter is not None:
            argv += ["--adapter_path", str(adapter)]
        costs.append(phases.run(f"evaluation {label}, {task}", argv, target / "log.txt"))
        summaries[task] = json.loads((target / "summary.json").read_text())
    return summaries, costs


def judge_time(stage_rows: Path) -> dict:
    """Judging the built set again, timed: the judge's own cost, apart from generation."""
    from rewards.judges import load_judge

    rows = [json.loads(line) for line in stage_rows.read_text().splitlines()]
    judge = load_judge(yaml.safe_load(RECIPE.read_text())["judge"])
    start = time.perf_counter()
    verdicts = judge([row["question"] for row in rows], [row["completion"] for row in rows], rows)
    seconds = time.perf_counter() - start
    assert [int(v) for v in verdicts] == [row["correct"] for row in rows]
    return {"phase": f"judging {len(rows)} answers (again)", "seconds": seconds, "peak_rss_mb": None}


def loss_cost(stage_rows: Path, repeats: int) -> dict:
    """Seconds per forward + backward of the ConfTuner loss and of plain SFT on the same batch of 8."""
    import torch
    from datasets import Dataset

    from posttrain.methods.conftuner.loss import confidence_forward, confidence_scale, tokenized_brier_loss
    from posttrain.methods.conftuner.trainer import confidence_examples

    recipe = yaml.safe_load(RECIPE.read_text())
    tokenizer, model = lora_model(recipe)
    scale = confidence_scale(tokenizer)
    rows = [json.loads(line) for line in stage_rows.read_text().splitlines()][:8]
    prompt = recipe["prompt_template"]
    examples = confidence_examples(
        Dataset.from_list(
            [
                {
                    "prompt": [{"role": "user", "content": prompt.format(**row)}],
                    "completion": row["completion"],
                    "correct": row["correct"],
                }
                for row in rows
            ]
        ),
        tokenizer,
        scale,
    )
    longest = max(len(ids) for ids in examples["input_ids"])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(rows), longest), pad)
    labels = torch.full((len(rows), longest), -100)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, (ids, lab) in enumerate(zip(examples["input_ids"], examples["labels"], strict=True)):
        input_ids[i, : len(ids)], labels[i, : len(ids)], mask[i, : len(ids)] = (
            torch.tensor(ids),
            torch.tensor(lab),
            1,
        )
    correct = torch.tensor(examples["correct"], dtype=torch.float32)

    def conftuner_step() -> None:
        tokenized_brier_loss(confidence_forward(model, input_ids, mask, scale), correct).backward()

    def sft_step() -> None:  # what TRL's SFTTrainer computes: next-token loss over every position
        model(input_ids=input_ids, attention_mask=mask, labels=labels, use_cache=False).loss.backward()

    times: dict[str, list[float]] = {"ConfTuner loss": [], "SFT loss": []}
    steps = {"ConfTuner loss": conftuner_step, "SFT loss": sft_step}
    for repeat in range(repeats + 1):
        order = list(steps) if repeat % 2 == 0 else list(steps)[::-1]
        for name in order:
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            steps[name]()
            if repeat > 0:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "batch": f"{len(rows)} rows x {longest} tokens",
        **{f"{name} s/step": value for name, value in medians.items()},
        "ratio": medians["ConfTuner loss"] / medians["SFT loss"],
        "repeats": repeats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--train-rows", type=int, default=200)
    parser.add_argument("--eval-rows", type=int, default=200)
    parser.add_argument("--engine", default="hf", help="generation engine of the evaluations")
    parser.add_argument("--loss-repeats", type=int, default=6)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "conftuner_bench")
    args = parser.parse_args()
    started = time.perf_counter()
    out, record = begin(args.out)
    phases: list[dict] = []
    summaries: dict[str, dict] = {}
    built: dict[int, dict] = {}
    summaries["base"], cost = evaluate("base", None, out, args.eval_rows, args.engine, record)
    phases += cost
    for seed in args.seeds:
        run = out / f"seed{seed}"
        recipe = seed_recipe(seed, run, args.train_rows)
        stage = ["stage", str(recipe)]
        phases.append(record.run(f"answers and judging, seed {seed}", stage, run / "stage.log"))
        built[seed] = json.loads((run / "stages" / "answers" / "summary.json").read_text())
        phases.append(judge_time(run / "stages" / "answers" / "train.jsonl"))
        phases.append(record.run(f"training, seed {seed}", ["train", str(recipe)], run / "train.log"))
        results = json.loads((run / "results.json").read_text())
        built[seed]["train_seconds"] = results["train"].get("train_runtime")
        summaries[f"ConfTuner seed {seed}"], cost = evaluate(
            f"conftuner-seed{seed}", run, out, args.eval_rows, args.engine, record
        )
        phases += cost
    loss = loss_cost(out / f"seed{args.seeds[0]}" / "stages" / "answers" / "train.jsonl", args.loss_repeats)

    lines = [
        f"SmolLM2-135M-Instruct + LoRA, ConfTuner on {args.train_rows} qa_wikidata language questions; held-out "
        f"splits, {args.eval_rows} prompts per task, greedy, confidence cued with 'Confidence (0-9): '",
        "",
    ]
    for task in EVALS:
        lines += [f"### {task}", ""]
        lines.append("| model | " + " | ".join(name for name, _ in COLUMNS) + " |")
        lines.append("|---" * (len(COLUMNS) + 1) + "|")
        for label, by_task in summaries.items():
            summary = by_task[task]
            lines.append(f"| {label} | " + " | ".join(cell(summary.get(key)) for _, key in COLUMNS) + " |")
        lines.append("")
    lines += ["### Built training sets", "", "| seed | rows | own accuracy | right / wrong | training s |"]
    lines.append("|---|---|---|---|---|")
    for seed, stats in built.items():
        lines.append(
            f"| {seed} | {stats['rows']} | {cell(stats['accuracy'])} | {stats['per_label']['1']} / "
            f"{stats['per_label']['0']} | {cell(stats['train_seconds'])} |"
        )
    lines += ["", "### Loss cost (one batch, forward + backward, median)", ""]
    lines.append(
        f"{loss['batch']}: ConfTuner {loss['ConfTuner loss s/step']:.3f} s, SFT {loss['SFT loss s/step']:.3f} s, "
        f"ratio {loss['ratio']:.3f} ({loss['repeats']} alternating repeats after a warm-up)"
    )
    lines += ["", "### Phases", "", "| phase | wall s | peak memory MB |", "|---|---|---|"]
    for phase in phases:
        memory = "-" if phase["peak_rss_mb"] is None else f"{phase['peak_rss_mb']:.0f}"
        lines.append(f"| {phase['phase']} | {phase['seconds']:.1f} | {memory} |")
    lines += ["", f"Total wall time: {time.perf_counter() - started:.0f} s"]
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n")
    (out / "table.json").write_text(
        json.dumps({"summaries": summaries, "built": built, "loss": loss, "phases": phases}, indent=2)
    )

    from eval.plots import reliability_grid

    first = f"ConfTuner seed {args.seeds[0]}"
    panels = []
    for task in EVALS:
        short = task.split(" (")[0]
        panels += [
            (f"{short}: base, verbal", summaries["base"][task].get("reliability")),
            (f"{short}: base, answer prob.", summaries["base"][task].get("logit_reliability")),
            (f"{short}: {first}", summaries[first][task].get("reliability")),
        ]
    reliability_grid(panels, out / "reliability.png", columns=3)


if __name__ == "__main__":
    main()
