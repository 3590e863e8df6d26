"""CLS-RL on this CPU: zero-shot, SFT, CLS-RL and No-Thinking-CLS-RL on real intent-recognition data.

    python benchmarks/cls_rl_intent.py [--seed 42] [--out outputs/cls_rl_intent] [--engine hf]

Trains the three recipes of ``recipes/cls_rl/`` (embedded SmolLM2-135M-Instruct, LoRA, 7 intents x 4 shots;
CLS-RL after its label-free format warm start),
then evaluates the base model and the three adapters with ``posttrain eval`` on the held-out intent test split
(every row not among the shots' split) and, for the "free lunch" check, on 100 Amazon fine-food reviews
(great / other) that no model trained on. Each model is evaluated with the prompt it was trained with; the
zero-shot model with both prompts. Greedy decoding.

Prints and writes ``table.md`` and ``table.json``: accuracy under the paper's lenient metric (gold class
named, no other candidate named) and under the strict training reward (exact class name; for the thinking
model the exact ``<answer>``), training time of each, and ``training.png``: mean reward and
``frac_reward_zero_std`` over the GRPO steps of both RL recipes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
RECIPES = {
    "SFT": ("recipes/cls_rl/sft_intent_cpu.yaml", "nothink"),
    "CLS-RL": ("recipes/cls_rl/think_intent_cpu.yaml", "think"),
    "No-Thinking-CLS-RL": ("recipes/cls_rl/nothink_intent_cpu.yaml", "nothink"),
}
# Trained first, and the recipe then starts from the model it saves (its time counts in the recipe's).
WARM_STARTS = {"CLS-RL": "recipes/cls_rl/think_warmstart_intent_cpu.yaml"}
EVALS = {
    ("intent", "nothink"): "recipes/eval/cls_intent_nothink.yaml",
    ("intent", "think"): "recipes/eval/cls_intent_think.yaml",
    ("amazon", "nothink"): "recipes/eval/cls_amazon_nothink.yaml",
    ("amazon", "think"): "recipes/eval/cls_amazon_think.yaml",
}
STRICT = {"nothink": "cls_equality", "think": "cls_accuracy"}
# The paper's own rewards in each RL recipe (the recipes add shaping rewards beside them).
PAPER_REWARDS = {"CLS-RL": ("cls_format", "cls_accuracy"), "No-Thinking-CLS-RL": ("cls_equality",)}

logger = logging.getLogger("benchmark")


def train_recipe(path: str, out: Path, seed: int, model: Path | None = None) -> dict:
    """Train one recipe (no held-out check: the evaluation below scores every model alike)."""
    from posttrain.recipe import load_recipe
    from posttrain.train import train

    overrides = ["--output_dir", str(out), "--seed", str(seed)]
    if model is not None:
        overrides += ["--model_name_or_path", str(model)]
    recipe = load_recipe(REPO / path, overrides)
    recipe.recipe.heldout_metric = None
    start = time.perf_counter()
    results = train(recipe)
    results["wall_seconds"] = time.perf_counter() - start
    results["num_generations"] = getattr(recipe.trainer, "num_generations", None)
    return results


def evaluate(eval_yaml: str, model: Path | None, adapter: Path | None, out: Path, engine: str) -> dict:
    from eval.runner import parse_evaluation, run_eval
    from posttrain.methods import discover_methods
    from posttrain.parsing import read_yaml

    discover_methods()  # the classification data builder comes with cls_rl
    path = REPO / eval_yaml
    args, data, builder = parse_evaluation(read_yaml(path), [], str(path))
    args = dataclasses.replace(
        args, adapter_path=str(adapter) if adapter else None, engine=engine, output_dir=str(out)
    )
    if model is not None:
        args = dataclasses.replace(args, model_name_or_path=str(model))
    (summary,) = run_eval(args, data, builder, base_dir=path.parent).values()
    return summary


def zero_std_without_shaping(
    run_dir: Path, paper_rewards: tuple[str, ...], group_size: int
) -> dict[int, float]:
    """Per step, the share of prompt groups whose paper-only reward (unweighted sum) has zero spread.

    Read from the run's completion log, which keeps every reward of every completion: this is what
    frac_reward_zero_std would have been had the recipe used the paper's rewards alone.
    """
    rows = [json.loads(line) for line in (run_dir / "completions" / "completions.jsonl").open()]
    rows = [r for r in rows if r["mode"] == "train"]
    by_step: dict[int, list[int]] = {}
    for start in range(0, len(rows) - group_size + 1, group_size):
        group = rows[start : start + group_size]
        totals = {sum(r["rewards"][name] for name in paper_rewards) for r in group}
        by_step.setdefault(group[0]["step"], []).append(int(len(totals) == 1))
    return {step: sum(flags) / len(flags) for step, flags in sorted(by_step.items())}


def plot_training(
    histories: dict[str, list[dict]], unshaped: dict[str, dict[int, float]], path: Path
) -> None:
    from posttrain.plots import saved_figure

    with saved_figure(path, "Training plot", dpi=120, ncols=3, figsize=(15, 3.8)) as (
        _,
        (left, middle, right),
    ):
        for name, history in histories.items():
            steps = [h for h in history if "reward" in h]
            left.plot([h["step"] for h in steps], [h["reward"] for h in steps], marker=".", label=name)
            strict = f"rewards/{STRICT[RECIPES[name][1]]}/mean"
            middle.plot(
                [h["step"] for h in steps],
                [h[strict] for h in steps],
                marker=".",
                label=f"{name} ({strict[8:-5]})",
            )
            line = right.plot(
                [h["step"] for h in steps], [h["frac_reward_zero_std"] for h in steps], marker=".", label=name
            )[0]
            paper = unshaped[name]
            right.plot(  # the completion log's step is the optimizer step the batch was generated at (0-based)
                [step + 1 for step in paper],
                list(paper.values()),
                linestyle="--",
                color=line.get_color(),
                label=f"{name}, paper rewards only",
            )
        left.set(xlabel="step", ylabel="mean reward (weighted sum)", title="Reward")
        middle.set(
            xlabel="step",
            ylabel="mean over the step's completions",
            title="Accuracy reward",
            ylim=(-0.05, 1.05),
        )
        right.set(xlabel="step", ylabel="share of groups", title="frac_reward_zero_std", ylim=(-0.05, 1.05))
        for ax in (left, middle, right):
            ax.grid(alpha=0.3)
            ax.legend()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="outputs/cls_rl_intent")
    parser.add_argument("--engine", default="hf", help="evaluation engine: hf, vllm or auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def trained_run(name: str, recipe: str, model: Path | None = None) -> dict:
        saved = out / "train" / name / "results.json"
        if saved.exists():  # trained by an earlier invocation: delete the run's folder to train it again
            result = json.loads(saved.read_text())
            result["num_generations"] = yaml.safe_load((REPO / recipe).read_text()).get("num_generations")
            logger.info("%s: reusing the run in %s", name, saved.parent)
            return result
        return train_recipe(recipe, out / "train" / name, args.seed, model)

    trained: dict[str, dict] = {}
    base_models: dict[str, Path] = {}
    for name, (recipe, _) in RECIPES.items():
        warm_seconds = 0.0
        if name in WARM_STARTS:
            base_models[name] = out / "train" / f"{name}-warmstart"
            warm = trained_run(base_models[name].name, WARM_STARTS[name])
            warm_seconds = warm["train"]["train_runtime"]
        result = trained_run(name, recipe, base_models.get(name))
        trained[name] = {
            "train_seconds": warm_seconds + result["train"]["train_runtime"],
            "warm_start_seconds": warm_seconds,
            "log_history": result["log_history"],
            "group_size": result["num_generations"],
        }
        logger.info("%s trained in %.0f s", name, trained[name]["train_seconds"])

    rows = []
    # Controls: the base model with each prompt, and each warm start alone (what GRPO started from).
    models = [("zero-shot", "nothink", None), ("zero-shot, thinking prompt", "think", None)]
    models += [(f"{n} warm start only", RECIPES[n][1], n) for n in WARM_STARTS]
    models += [(n, p, n) for n, (_, p) in RECIPES.items()]
    for name, prompt, run in models:
        adapter = out / "train" / name if name in trained else None
        row = {"model": name, "prompt": prompt, "train_seconds": trained.get(name, {}).get("train_seconds")}
        if name not in trained and run in trained:
            row["train_seconds"] = trained[run]["warm_start_seconds"]
        for dataset in ("intent", "amazon"):
            summary = evaluate(
                EVALS[(dataset, prompt)],
                base_models.get(run),
                adapter,
                out / "eval" / dataset / name,
                args.engine,
            )
            row[f"{dataset}_lenient"] = summary["mean_reward/cls_contains"]
            row[f"{dataset}_strict"] = summary[f"mean_reward/{STRICT[prompt]}"]
            row[f"{dataset}_prompts"] = summary["prompts"]
        rows.append(row)
        logger.info("%s", row)

    lines = [
        f"SmolLM2-135M-Instruct + LoRA, intent recognition 7 intents x 4 shots, seed {args.seed}, greedy, "
        f"{args.engine} engine",
        "",
        "| model | intent held-out, lenient | intent held-out, strict | Amazon reviews, lenient "
        "| Amazon reviews, strict | training time |",
        "|---|---|---|---|---|---|",
    ]

    def score(value: float | None) -> str:  # a summary holds null where nothing was scored
        return "n/a" if value is None else f"{value:.3f}"

    for row in rows:
        seconds = row["train_seconds"]
        lines.append(
            f"| {row['model']} | {score(row['intent_lenient'])} | {score(row['intent_strict'])} | "
            f"{score(row['amazon_lenient'])} | {score(row['amazon_strict'])} | "
            f"{'-' if seconds is None else f'{seconds:.0f} s'} |"
        )
    lines.append("")
    lines.append(
        f"Held-out prompts: intent {rows[0]['intent_prompts']}, Amazon {rows[0]['amazon_prompts']}. "
        "Lenient: the gold class named and no other candidate; strict: the exact class name "
        "(CLS-RL: the exact `<answer>`)."
    )
    for name, recipe in WARM_STARTS.items():
        lines.append(
            f"{name}'s training time includes its format warm start ({recipe}): "
            f"{trained[name]['warm_start_seconds']:.0f} s."
        )
    (out / "table.json").write_text(json.dumps(rows, indent=2))
    rl = ("CLS-RL", "No-Thinking-CLS-RL")
    unshaped = {
        n: zero_std_without_shaping(out / "train" / n, PAPER_REWARDS[n], trained[n]["group_size"]) for n in rl
    }
    for name in rl:
        shaped = [
            h["frac_reward_zero_std"] for h in trained[name]["log_history"] if "frac_reward_zero_std" in h
        ]
        paper = list(unshaped[name].values())
        lines.append(
            f"{name}: groups with zero reward spread, mean over steps: {sum(shaped) / len(shaped):.2f} with the "
            f"recipe's rewards, {sum(paper) / len(paper):.2f} had the paper's rewards been used alone."
        )
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    plot_training({n: trained[n]["log_history"] for n in rl}, unshaped, out / "training.png")
    logger.info("\n%s\nwritten to %s", table, out)


if __name__ == "__main__":
    main()
