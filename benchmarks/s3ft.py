"""S3FT on this CPU against its baselines SFT and SDFT: in-domain accuracy, forgetting on tasks never trained on,
a task-free drift, the composition of the built set, the data stage's generation throughput, and the time and
memory of each phase.

    python benchmarks/s3ft.py [--task qa|humaneval] [--seeds 0 1] [--train-rows 100] [--eval-rows 100] [--out DIR]

For each seed and each rule (``s3ft``, ``sft``, ``sdft``), the CPU recipe of that rule (``recipes/s3ft/``) runs in
two commands: ``posttrain stage`` (the targets) and ``posttrain train`` (LoRA SFT on them). ``posttrain eval`` then
scores the base model (once: greedy decoding does not depend on the seed) and every adapter, one process per task,
on the held-out in-domain split (language questions, or HumanEval with ``--task humaneval``), on qa_wikidata's
other relations and on Amazon reviews (never trained on). The task-free drift: the base model's greedy answers to
general requests (intent_recognition's test utterances) are scored under each adapter, teacher-forced, in one
process: the mean per-token KL divergence from the base model's next-token distribution and the change in their
perplexity.

Throughput: on the first seed's S3FT recipe, the data stage over ``--throughput-rows`` rows with a warm HF engine,
against the same engine generating the same prompts bare (the stage's calls replayed), in tokens per second.

Each phase runs in a process of its own (wall time, peak resident memory). Stopped, the benchmark resumes when run
again with the same ``--out``. Prints the tables and writes ``table.md`` and ``table.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from pathlib import Path

import yaml
from phases import REPO, Phases, begin, cell

RULES = ("sft", "sdft", "s3ft")
EVAL = REPO / "recipes" / "eval"
# Each task: the CPU recipe of each rule (one recipe whose target_rule the benchmark sets, or one per rule) and its
# in-domain evaluation. The evaluations of forgetting are the same for every task.
TASKS = {
    "qa": {
        "recipes": {rule: REPO / "recipes" / "s3ft" / f"{rule}_qa_language_cpu.yaml" for rule in RULES},
        "in_domain": ("language QA (in-domain)", EVAL / "s3ft_qa_language.yaml"),
    },
    "humaneval": {
        "recipes": {rule: REPO / "recipes" / "s3ft" / "s3ft_humaneval_cpu.yaml" for rule in RULES},
        "in_domain": ("HumanEval pass@1 (in-domain)", EVAL / "s3ft_humaneval.yaml"),
    },
}
UNSEEN = {
    "other QA relations (unseen)": EVAL / "s3ft_qa_other.yaml",
    "Amazon reviews (unseen task)": EVAL / "s3ft_amazon.yaml",
}

logger = logging.getLogger("benchmark")


def seed_recipe(task: str, rule: str, seed: int, out: Path, train_rows: int, **overrides) -> Path:
    """A rule's shipped recipe for one seed: its own output folder, ``train_rows`` rows, no held-out check (the
    benchmark evaluates every model alike), and any trainer ``overrides`` given on the command line."""
    config = yaml.safe_load(TASKS[task]["recipes"][rule].read_text())
    config.update(output_dir=str(out), seed=seed, max_train_samples=train_rows, heldout_metric=None)
    config.update(target_rule=rule, **{k: v for k, v in overrides.items() if v is not None})
    path = out.parent / f"recipe-{rule}-seed{seed}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=True))
    return path


def accuracy(summary: dict) -> float | None:
    return summary.get("pass@1")


def evaluate_all(
    models: dict[str, Path | None],
    out: Path,
    evals: dict[str, Path],
    rows: dict[str, int],
    phases: Phases,
    engine: str = "hf",
) -> dict[str, dict]:
    """Every model on every task, one ``posttrain eval`` process per task for all the models (the evaluation's
    ``models`` list: a process start and a base-model load per task, not per model): summaries by model, then
    task. The merged checkpoints an evaluation writes for the adapters are removed once it is scored."""
    summaries: dict[str, dict] = {label: {} for label in models}
    for task, config_path in evals.items():
        folder = out / "eval" / config_path.stem
        config = yaml.safe_load(config_path.read_text())
        base = config.pop("model_name_or_path")
        config["models"] = [
            {"model": base, "label": label, **({"adapter": str(adapter)} if adapter else {})}
            for label, adapter in models.items()
        ]
        config.update(output_dir=str(folder), max_samples=rows[task], engine=engine)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "eval.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        phases.run(
            f"evaluation, {task} ({len(models)} models)",
            ["eval", str(folder / "eval.yaml")],
            folder / "log.txt",
        )
        for label in models:
            summaries[label][task] = json.loads((folder / label / "summary.json").read_text())
            shutil.rmtree(folder / label / "merged-model", ignore_errors=True)
    return summaries


# --- task-free drift (runs in a process of its own: `s3ft.py drift ...`) ---------------------------------------


def general_prompts(count: int) -> list[list[dict[str, str]]]:
    from posttrain.data import load_registered

    utterances = load_registered("intent_recognition")["test"]["text"][:count]
    return [[{"role": "user", "content": text}] for text in utterances]


def base_answers(path: Path, count: int, max_new_tokens: int) -> list[dict]:
    """The base model's greedy answers to ``count`` general requests, made once and kept in ``path``."""
    if path.exists():
        return json.loads(path.read_text())
    from posttrain.generation import Sampling, make_engine, render_prompt
    from posttrain.models import resolve_model_path

    engine = make_engine("hf", resolve_model_path("smollm2-135m-instruct"), dtype="float32")
    prompts = [render_prompt(engine.tokenizer, p) for p in general_prompts(count)]
    answers = engine.generate(prompts, Sampling(n=1, temperature=0.0, max_new_tokens=max_new_tokens))
    rows = [{"prompt": p, "answer": a[0]} for p, a in zip(prompts, answers, strict=True)]
    path.write_text(json.dumps(rows, indent=1))
    return rows


def drift(answers_path: Path, runs: list[Path]) -> None:
    """For each run's adapter: the mean per-token KL(base || adapted) over the base model's own answers, and their
    perplexity under each, written to ``<run>/drift.json``. The base model's distributions are computed once."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.models import resolve_model_path

    rows = json.loads(answers_path.read_text())
    path = resolve_model_path("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    examples = []  # (input ids, answer positions, answer tokens, base log-probabilities)
    with torch.no_grad():
        for row in rows:
            prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            answer = tokenizer(row["answer"], add_special_tokens=False)["input_ids"]
            if not answer:
                continue
            ids = torch.tensor([prompt + answer])
            positions = slice(
                len(prompt) - 1, len(prompt) + len(answer) - 1
            )  # the answer tokens' predictions
            p = torch.log_softmax(base(ids).logits[0, positions].float(), -1)
            examples.append((ids, positions, ids[0, len(prompt) :], p))
    tokens = sum(len(target) for _, _, target, _ in examples)
    nll_base = -sum(float(p.gather(1, target[:, None]).sum()) for _, _, target, p in examples)
    for run in runs:
        tuned = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), str(run)
        ).eval()
        kl_sum = nll_tuned = 0.0
        with torch.no_grad():
            for ids, positions, target, p in examples:
                q = torch.log_softmax(tuned(ids).logits[0, positions].float(), -1)
                kl_sum += float((p.exp() * (p - q)).sum())
                nll_tuned -= float(q.gather(1, target[:, None]).sum())
        result = {
            "kl_per_token": kl_sum / tokens,
            "ppl_base": math.exp(nll_base / tokens),
            "ppl_tuned": math.exp(nll_tuned / tokens),
            "tokens": tokens,
            "prompts": len(rows),
        }
        (run / "drift.json").write_text(json.dumps(result))
        logger.info("drift of %s: %s", run.name, result)


# --- the data stage's generation throughput (`s3ft.py throughput ...`) ------------------------------------------


def throughput(recipe_path: Path, rows_count: int, result: Path) -> None:
    """The S3FT stage over ``rows_count`` rows and the bare engine on the same calls, on one warm engine, in the
    order stage, bare, bare, stage, so that warm-up and drifting load fall on both alike. The stage's time inside
    ``engine.generate`` is kept apart from the rest of its time (prompt rendering, judging, writing rows)."""
    import tempfile

    from posttrain.data import load_recipe_splits
    from posttrain.generation import Sampling
    from posttrain.methods.s3ft.data import TARGET_STAGE
    from posttrain.recipe import load_recipe
    from posttrain.stages import StageContext, _fingerprint, run_stage

    recipe = load_recipe(recipe_path)
    rows = load_recipe_splits(recipe.data, recipe.builder, seed=recipe.trainer.seed)["train"]
    rows = rows.select(range(min(rows_count, len(rows))))
    context = StageContext(recipe=recipe, engine_name="hf")
    warm = [[{"role": "user", "content": "Say hello."}]] * 4
    context.generate(warm, Sampling(n=1, temperature=0.0, max_new_tokens=8))  # starts the engine
    engine = context._loaded["engine"]
    generate = engine.generate
    calls: list[tuple[list[str], Sampling]] = []

    def stage_leg() -> dict:
        seen = {"tokens": 0, "generate_s": 0.0}

        def recorded(prompts, sampling, desc=None):
            if not legs:
                calls.append((list(prompts), sampling))
            began = time.perf_counter()
            out = generate(prompts, sampling, desc)
            seen["generate_s"] += time.perf_counter() - began
            seen["tokens"] += engine.last_tokens
            return out

        engine.generate = recorded
        with tempfile.TemporaryDirectory() as folder:
            began = time.perf_counter()
            run_stage(TARGET_STAGE, rows, Path(folder), context, _fingerprint(recipe, TARGET_STAGE))
            seconds = time.perf_counter() - began
        engine.generate = generate
        return {"leg": "stage", "seconds": seconds, **seen}

    def bare_leg() -> dict:
        tokens, began = 0, time.perf_counter()
        for prompts, sampling in calls:
            generate(prompts, sampling)
            tokens += engine.last_tokens
        return {"leg": "bare", "seconds": time.perf_counter() - began, "tokens": tokens}

    legs: list[dict] = []
    for leg in (stage_leg, bare_leg, bare_leg, stage_leg):
        legs.append(leg())
        logger.info("throughput leg %s: %s", legs[-1]["leg"], legs[-1])
    stage = [leg for leg in legs if leg["leg"] == "stage"]
    bare = [leg for leg in legs if leg["leg"] == "bare"]
    stage_rate = sum(leg["tokens"] for leg in stage) / sum(leg["seconds"] for leg in stage)
    bare_rate = sum(leg["tokens"] for leg in bare) / sum(leg["seconds"] for leg in bare)
    result.write_text(
        json.dumps(
            {
                "rows": len(rows),
                "calls": len(calls),
                "prompts": sum(len(c[0]) for c in calls),
                "legs": legs,
                "stage_tokens": stage[0]["tokens"],
                "bare_tokens": bare[0]["tokens"],
                "stage_outside_generate_s": sum(leg["seconds"] - leg["generate_s"] for leg in stage)
                / len(stage),
                "stage_tokens_per_s": stage_rate,
                "bare_tokens_per_s": bare_rate,
            }
        )
    )


# --- the whole benchmark ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--task", choices=sorted(TASKS), default="qa", help="qa: language questions; humaneval: code"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--train-rows", type=int, default=100)
    parser.add_argument("--eval-rows", type=int, default=100, help="prompts per QA task")
    parser.add_argument("--amazon-rows", type=int, default=50, help="Amazon reviews (long prompts: slow)")
    parser.add_argument("--drift-prompts", type=int, default=32)
    parser.add_argument("--drift-tokens", type=int, default=48)
    parser.add_argument(
        "--eval-engine", default="hf", help="generation engine of the evaluations (hf, vllm or auto)"
    )
    parser.add_argument("--throughput-rows", type=int, default=64)
    parser.add_argument("--epochs", type=float, help="num_train_epochs for every run (default: the recipe's)")
    parser.add_argument(
        "--bf16", action="store_true", help="train under bfloat16 autocast (default: the recipe's float32)"
    )
    parser.add_argument(
        "--out", type=Path, help="default: outputs/s3ft_bench (qa), outputs/s3ft_bench_<task>"
    )
    args = parser.parse_args()
    if args.out is None:
        args.out = REPO / "outputs" / ("s3ft_bench" if args.task == "qa" else f"s3ft_bench_{args.task}")
    started = time.perf_counter()
    out, record = begin(args.out)
    script = Path(__file__).resolve()
    in_domain, in_domain_config = TASKS[args.task]["in_domain"]
    evals = {in_domain: in_domain_config, **UNSEEN}
    rows = {task: args.eval_rows for task in evals} | {"Amazon reviews (unseen task)": args.amazon_rows}

    overrides = {"num_train_epochs": args.epochs, "bf16": True if args.bf16 else None}
    answers = out / "drift_base_answers.json"
    drift_argv = ["base-answers", str(answers), str(args.drift_prompts), str(args.drift_tokens)]
    record.run("drift: base answers to general requests", drift_argv, out / "drift.log", script)
    built: dict[str, dict] = {}
    trained: dict[str, float | None] = {}
    runs: dict[str, Path] = {}
    for seed in args.seeds:
        for rule in RULES:
            run = out / f"{rule}-seed{seed}"
            label = f"{rule.upper()} seed {seed}"
            recipe = seed_recipe(args.task, rule, seed, run, args.train_rows, **overrides)
            record.run(f"targets, {rule}, seed {seed}", ["stage", str(recipe)], run / "stage.log")
            built[label] = json.loads((run / "stages" / "targets" / "summary.json").read_text())
            record.run(f"training, {rule}, seed {seed}", ["train", str(recipe)], run / "train.log")
            results = json.loads((run / "results.json").read_text())
            trained[label] = results["train"].get("train_runtime")
            runs[label] = run
    models = {"base": None} | {label.replace(" ", "-"): run for label, run in runs.items()}
    by_model = evaluate_all(models, out, evals, rows, record, args.eval_engine)
    summaries = {label: by_model[label.replace(" ", "-")] for label in ["base", *runs]}
    record.run(
        f"drift ({len(runs)} models)",
        ["drift", str(answers), *map(str, runs.values())],
        out / "drift.log",
        script,
    )
    drifts = {label: json.loads((run / "drift.json").read_text()) for label, run in runs.items()}
    speed = out / "throughput.json"
    first = seed_recipe(
        args.task, "s3ft", args.seeds[0], out / f"s3ft-seed{args.seeds[0]}", args.train_rows, **overrides
    )
    record.run(
        "throughput: stage vs bare engine",
        ["throughput", str(first), str(args.throughput_rows), str(speed)],
        out / "throughput.log",
        script,
    )
    speed = json.loads(speed.read_text())
    report(args, out, evals, summaries, built, drifts, trained, speed, record, started)


def report(args, out, evals, summaries, built, drifts, trained, speed, record, started) -> None:
    lines = [
        f"SmolLM2-135M-Instruct + LoRA (r 8, alpha 16, dropout 0.1), task {args.task}, {args.train_rows} training "
        f"rows; test splits, greedy; accuracy (qa_contains / cls_contains / unit tests passed)",
        "",
        "| model | " + " | ".join(evals) + " | KL/token vs base | perplexity (base 1st) | training s |",
        "|---" * (len(evals) + 4) + "|",
    ]
    for label, by_task in summaries.items():
        scores = " | ".join(cell(accuracy(by_task[task])) for task in evals)
        d = drifts.get(label)
        kl = cell(d["kl_per_token"]) if d else "0"
        ppl = f"{d['ppl_base']:.2f} -> {d['ppl_tuned']:.2f}" if d else "-"
        lines.append(f"| {label} | {scores} | {kl} | {ppl} | {cell(trained.get(label))} |")
    lines += ["", "Built training sets (rows and share of each target source):", ""]
    lines += [
        "| run | rows | own | paraphrase | gold | own accuracy | rewrites accepted |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, stats in built.items():
        s = stats["sources"]
        lines.append(
            f"| {label} | {stats['rows']} | {s['own']} | {s['paraphrase']} | {s['gold']} | "
            f"{cell(stats['own_accuracy'])} | {cell(stats['paraphrase_accepted'])} |"
        )
    lines += [
        "",
        f"Stage throughput ({speed['rows']} rows, {speed['prompts']} prompts in {speed['calls']} calls, HF engine): "
        f"stage {speed['stage_tokens_per_s']:.1f} tokens/s, bare engine {speed['bare_tokens_per_s']:.1f} tokens/s, "
        f"ratio {speed['stage_tokens_per_s'] / speed['bare_tokens_per_s']:.3f} (legs stage, bare, bare, stage; "
        f"{speed['stage_tokens']} tokens a leg; the stage's mean time outside generation: "
        f"{speed['stage_outside_generate_s']:.2f} s a leg)",
        "",
        "| phase | wall s | peak memory MB |",
        "|---|---|---|",
    ]
    for phase in record.records.values():
        lines.append(f"| {phase['phase']} | {phase['seconds']:.1f} | {phase['peak_rss_mb']:.0f} |")
    lines += ["", f"Total wall time of this invocation: {time.perf_counter() - started:.0f} s"]
    table = "\n".join(lines)
    print(table)
    (out / "table.md").write_text(table + "\n")
    payload = {
        "summaries": summaries,
        "built": built,
        "drift": drifts,
        "train_seconds": trained,
        "throughput": speed,
    }
    (out / "table.json").write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    commands = {
        "base-answers": lambda a: base_answers(Path(a[0]), int(a[1]), int(a[2])),
        "drift": lambda a: drift(Path(a[0]), [Path(run) for run in a[1:]]),
        "throughput": lambda a: throughput(Path(a[0]), int(a[1]), Path(a[2])),
    }
    if len(sys.argv) > 1 and sys.argv[1] in commands:
        logging.basicConfig(level=logging.INFO)
        commands[sys.argv[1]](sys.argv[2:])
    else:
        main()
