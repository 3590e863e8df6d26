"""S3FT on this CPU against its baselines SFT and SDFT: in-domain accuracy, forgetting on tasks never trained on,
a task-free drift, the composition of the built set, the data stage's generation throughput, and the time and
memory of each phase.

    python benchmarks/s3ft.py [--seeds 0 1] [--train-rows 100] [--eval-rows 100] [--out outputs/s3ft_bench]

For each seed and each rule (``s3ft``, ``sft``, ``sdft``), the CPU recipe of that rule (``recipes/s3ft/``) runs in
two commands: ``posttrain stage`` (the targets) and ``posttrain train`` (LoRA SFT on them). ``posttrain eval`` then
scores the base model (once: greedy decoding does not depend on the seed) and each adapter on the held-out
language questions (in-domain), on qa_wikidata's other relations and on Amazon reviews (never trained on). The
task-free drift: the base model's greedy answers to general requests (intent_recognition's test utterances) are
scored under each adapter, teacher-forced: the mean per-token KL divergence from the base model's next-token
distribution and the change in their perplexity.

Throughput: on the first seed's S3FT recipe, the data stage over ``--throughput-rows`` rows with a warm HF engine,
against the same engine generating the same prompts bare (the stage's calls replayed), in tokens per second.

Each phase runs in a process of its own (wall time, peak resident memory). Stopped, the benchmark resumes when run
again with the same ``--out``. Prints the tables and writes ``table.md`` and ``table.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import yaml
from phases import REPO, Phases, begin, cell

RULES = ("sft", "sdft", "s3ft")
RECIPES = {rule: REPO / "recipes" / "s3ft" / f"{rule}_qa_language_cpu.yaml" for rule in RULES}
EVALS = {
    "language QA (in-domain)": REPO / "recipes" / "eval" / "s3ft_qa_language.yaml",
    "other QA relations (unseen)": REPO / "recipes" / "eval" / "s3ft_qa_other.yaml",
    "Amazon reviews (unseen task)": REPO / "recipes" / "eval" / "s3ft_amazon.yaml",
}
SCORE = {"language QA (in-domain)": "qa_contains", "other QA relations (unseen)": "qa_contains"}

logger = logging.getLogger("benchmark")


def seed_recipe(rule: str, seed: int, out: Path, train_rows: int) -> Path:
    """A rule's shipped recipe for one seed: its own output folder, ``train_rows`` questions, no held-out check
    (the benchmark evaluates every model alike)."""
    config = yaml.safe_load(RECIPES[rule].read_text())
    config.update(output_dir=str(out), seed=seed, max_train_samples=train_rows, heldout_metric=None)
    path = out.parent / f"recipe-{rule}-seed{seed}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=True))
    return path


def accuracy(summary: dict, task: str) -> float | None:
    return summary.get("pass@1", summary.get(SCORE.get(task, ""), None))


def evaluate(label: str, adapter: Path | None, out: Path, rows: dict[str, int], phases: Phases) -> dict:
    """Every evaluation of one model: its summaries by task."""
    summaries = {}
    for task, config in EVALS.items():
        target = out / "eval" / label / config.stem
        argv = ["eval", str(config), "--output_dir", str(target), "--max_samples", str(rows[task])]
        argv += ["--engine", "hf"]
        if adapter is not None:
            argv += ["--adapter_path", str(adapter)]
        phases.run(f"evaluation {label}, {task}", argv, target / "log.txt")
        summaries[task] = json.loads((target / "summary.json").read_text())
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


def drift(adapter: Path, answers_path: Path, result: Path) -> None:
    """Mean per-token KL(base || adapted) over the base model's own answers, and their perplexity under each."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from posttrain.models import resolve_model_path

    rows = json.loads(answers_path.read_text())
    path = resolve_model_path("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tuned = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), str(adapter)
    ).eval()
    kl_sum = nll_base = nll_tuned = tokens = 0.0
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
            target = ids[0, len(prompt) :]
            p = torch.log_softmax(base(ids).logits[0, positions].float(), -1)
            q = torch.log_softmax(tuned(ids).logits[0, positions].float(), -1)
            kl_sum += float((p.exp() * (p - q)).sum())
            nll_base -= float(p.gather(1, target[:, None]).sum())
            nll_tuned -= float(q.gather(1, target[:, None]).sum())
            tokens += len(answer)
    result.write_text(
        json.dumps(
            {
                "kl_per_token": kl_sum / tokens,
                "ppl_base": float(torch.exp(torch.tensor(nll_base / tokens))),
                "ppl_tuned": float(torch.exp(torch.tensor(nll_tuned / tokens))),
                "tokens": tokens,
                "prompts": len(rows),
            }
        )
    )


# --- the data stage's generation throughput (`s3ft.py throughput ...`) ------------------------------------------


def throughput(recipe_path: Path, rows_count: int, result: Path) -> None:
    """The S3FT stage over ``rows_count`` rows and the bare engine on the same calls, both on one warm engine."""
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
    calls: list[tuple[list[str], Sampling]] = []
    tokens = {"stage": 0}
    generate = engine.generate

    def recorded(prompts, sampling, desc=None):
        calls.append((list(prompts), sampling))
        out = generate(prompts, sampling, desc)
        tokens["stage"] += engine.last_tokens
        return out

    engine.generate = recorded
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        run_stage(TARGET_STAGE, rows, Path(folder), context, _fingerprint(recipe, TARGET_STAGE))
        stage_seconds = time.perf_counter() - start
    engine.generate = generate
    start = time.perf_counter()
    bare_tokens = 0
    for prompts, sampling in calls:
        generate(prompts, sampling)
        bare_tokens += engine.last_tokens
    bare_seconds = time.perf_counter() - start
    result.write_text(
        json.dumps(
            {
                "rows": len(rows),
                "calls": len(calls),
                "prompts": sum(len(c[0]) for c in calls),
                "stage_tokens": tokens["stage"],
                "stage_seconds": stage_seconds,
                "bare_tokens": bare_tokens,
                "bare_seconds": bare_seconds,
                "stage_tokens_per_s": tokens["stage"] / stage_seconds,
                "bare_tokens_per_s": bare_tokens / bare_seconds,
            }
        )
    )


# --- the whole benchmark ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--train-rows", type=int, default=100)
    parser.add_argument("--eval-rows", type=int, default=100, help="prompts per QA task")
    parser.add_argument("--amazon-rows", type=int, default=50, help="Amazon reviews (long prompts: slow)")
    parser.add_argument("--drift-prompts", type=int, default=32)
    parser.add_argument("--drift-tokens", type=int, default=48)
    parser.add_argument("--throughput-rows", type=int, default=64)
    parser.add_argument("--out", type=Path, default=REPO / "outputs" / "s3ft_bench")
    args = parser.parse_args()
    started = time.perf_counter()
    out, record = begin(args.out)
    script = Path(__file__).resolve()
    rows = {task: args.eval_rows for task in EVALS} | {"Amazon reviews (unseen task)": args.amazon_rows}

    summaries: dict[str, dict] = {"base": evaluate("base", None, out, rows, record)}
    answers = out / "drift_base_answers.json"
    drift_argv = ["base-answers", str(answers), str(args.drift_prompts), str(args.drift_tokens)]
    record.run("drift: base answers to general requests", drift_argv, out / "drift.log", script)
    built: dict[str, dict] = {}
    drifts: dict[str, dict] = {}
    trained: dict[str, float | None] = {}
    for seed in args.seeds:
        for rule in RULES:
            run = out / f"{rule}-seed{seed}"
            label = f"{rule.upper()} seed {seed}"
            recipe = seed_recipe(rule, seed, run, args.train_rows)
            record.run(f"targets, {rule}, seed {seed}", ["stage", str(recipe)], run / "stage.log")
            built[label] = json.loads((run / "stages" / "targets" / "summary.json").read_text())
            record.run(f"training, {rule}, seed {seed}", ["train", str(recipe)], run / "train.log")
            results = json.loads((run / "results.json").read_text())
            trained[label] = results["train"].get("train_runtime")
            summaries[label] = evaluate(f"{rule}-seed{seed}", run, out, rows, record)
            result = run / "drift.json"
            record.run(
                f"drift, {rule}, seed {seed}",
                ["drift", str(run), str(answers), str(result)],
                run / "drift.log",
                script,
            )
            drifts[label] = json.loads(result.read_text())
    speed = out / "throughput.json"
    first = seed_recipe("s3ft", args.seeds[0], out / f"s3ft-seed{args.seeds[0]}", args.train_rows)
    record.run(
        "throughput: stage vs bare engine",
        ["throughput", str(first), str(args.throughput_rows), str(speed)],
        out / "throughput.log",
        script,
    )
    report(args, out, summaries, built, drifts, trained, json.loads(speed.read_text()), record, started)


def report(args, out, summaries, built, drifts, trained, speed, record, started) -> None:
    lines = [
        f"SmolLM2-135M-Instruct + LoRA (r 8, alpha 16, dropout 0.1), {args.train_rows} training language questions "
        f"of qa_wikidata; test splits, greedy; accuracy (qa_contains / cls_contains)",
        "",
        "| model | " + " | ".join(EVALS) + " | KL/token vs base | perplexity (base 1st) | training s |",
        "|---" * (len(EVALS) + 4) + "|",
    ]
    for label, by_task in summaries.items():
        scores = " | ".join(cell(accuracy(by_task[task], task)) for task in EVALS)
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
        f"ratio {speed['stage_tokens_per_s'] / speed['bare_tokens_per_s']:.3f}",
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
        "drift": lambda a: drift(Path(a[0]), Path(a[1]), Path(a[2])),
        "throughput": lambda a: throughput(Path(a[0]), int(a[1]), Path(a[2])),
    }
    if len(sys.argv) > 1 and sys.argv[1] in commands:
        logging.basicConfig(level=logging.INFO)
        commands[sys.argv[1]](sys.argv[2:])
    else:
        main()
