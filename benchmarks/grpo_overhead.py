"""What the posttrain layer costs on top of TRL: one GRPO configuration, run through `posttrain train` and
through a bare TRL script in one process, in ABBA order, comparing seconds per step.

    python benchmarks/grpo_overhead.py [--steps 12] [--warmup 1] [--repeats 2]
    python benchmarks/grpo_overhead.py --profile [--profile-steps 4]

Both sides use the embedded model, the same data rows (same seed), prompts, rewards and GRPOConfig; the
posttrain side adds what it always adds (recipe parsing, the reward contract wrapper, the per-completion
JSONL log). Seconds per step are TRL's own ``step_time`` (generation, rewards, loss, backward).

The rewards are the math rewards a GSM recipe uses plus `arithmetic_share`, a graded score that differs
between the completions of a group, so advantages are not all zero and the backward pass does real work (a
small model rarely earns the exact-answer rewards in 32 tokens). Both sides call the same functions.

Each repeat is one ABBA block: bare TRL, posttrain, posttrain, bare TRL, each leg a fresh trainer. The
first ``--warmup`` steps of every leg are dropped; the rest (steady state) are paired step by step with the
adjacent leg of the other side, which generated from the same prompts. Reported: mean, median, quartiles
and min/max of the per-step ratio posttrain / bare TRL, the share of pairs above 1, and the ratio of means.

``--profile`` instead runs one short leg of each side under cProfile and logs the top functions by
cumulative time, the phases of a step (generation, rewards with posttrain's completion log, loss, backward)
side by side, and the posttrain layer's own per-step functions (``posttrain/``, ``rewards/``: completion log,
reward contract wrapper, ...) with seconds per step, so an overhead can be traced to its source.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

logger = logging.getLogger("benchmark")

TEMPLATE = "{question}\nSolve it step by step, then give the final number on its own line as '#### <number>'."
REPO = Path(__file__).resolve().parent.parent
ARITHMETIC = frozenset("0123456789+-*/=.")


def arithmetic_share(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """Share of a completion's non-space characters that are digits or ``+-*/=.``: 0 for prose, near 1 for
    working. Graded, so the completions of a group almost never all score the same."""
    from rewards.contract import completion_text

    scores = []
    for completion in completions:
        text = "".join(completion_text(completion).split())
        scores.append(sum(c in ARITHMETIC for c in text) / len(text) if text else 0.0)
    return scores


def reward_specs() -> list[str]:
    """The recipe's reward_funcs: registered math rewards and this file's graded reward (as a plug-in)."""
    return ["numeric_answer", "numeric_answer_format", f"{Path(__file__).resolve()}:arithmetic_share"]


def bare_reward_funcs() -> list[Callable[..., Any]]:
    """The same three functions, as a hand-written TRL script would pass them."""
    from rewards.math import numeric_answer, numeric_answer_format

    return [numeric_answer, numeric_answer_format, arithmetic_share]


def shared_settings(steps: int, completion_length: int, output_dir: Path) -> dict:
    return {
        "beta": 0.0,
        "bf16": False,
        "learning_rate": 1.0e-6,
        "logging_steps": 1,
        "loss_type": "dapo",
        "max_completion_length": completion_length,
        "max_steps": steps,
        "num_generations": 8,
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 8,
        "report_to": "none",
        "save_strategy": "no",
        "scale_rewards": "group",
        "seed": 7,
        "temperature": 1.0,
        "use_cpu": True,
    }


def step_times(log_history: list[dict]) -> list[float]:
    return [entry["step_time"] for entry in log_history if "step_time" in entry]


def reward_summary(log_history: list[dict]) -> str:
    """Mean reward and its within-group spread over the leg: evidence that the backward pass had signal."""
    steps = [e for e in log_history if "reward" in e]
    if not steps:
        return "no reward logged"
    mean = statistics.mean(e["reward"] for e in steps)
    std = statistics.mean(e.get("reward_std", float("nan")) for e in steps)
    zero_std = statistics.mean(e.get("frac_reward_zero_std", float("nan")) for e in steps)
    return f"reward {mean:.3f}, reward_std {std:.3f}, frac_reward_zero_std {zero_std:.2f}"


def run_posttrain(model_path: str, steps: int, completion_length: int, workdir: Path) -> list[dict]:
    from posttrain.recipe import load_recipe
    from posttrain.train import train

    recipe = {
        "method": "grpo",
        "model_name_or_path": model_path,
        "dataset_name": "gsm_symbolic",
        "max_train_samples": steps,
        "prompt_template": TEMPLATE,
        "reward_funcs": reward_specs(),
        "dtype": "float32",
        **shared_settings(steps, completion_length, workdir / "posttrain"),
    }
    path = workdir / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    results = train(load_recipe(path))
    return results["log_history"]


def run_bare_trl(model_path: str, steps: int, completion_length: int, workdir: Path) -> list[dict]:
    """The script a user would write by hand with TRL alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from posttrain.data import load_registered

    rows = load_registered("gsm_symbolic")["train"].shuffle(seed=7).select(range(steps))
    dataset = rows.map(lambda r: {"prompt": [{"role": "user", "content": TEMPLATE.format(**r)}]})
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=bare_reward_funcs(),
        args=GRPOConfig(**shared_settings(steps, completion_length, workdir / "bare")),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer.state.log_history


RUNNERS = {"bare TRL": run_bare_trl, "posttrain": run_posttrain}


def work_done(log_history: list[dict]) -> list[tuple[float, float]]:
    """Per step, the mean completion length and the mean reward: equal on both sides when they generated the
    same completions, so that a paired step compares the same work."""
    return [
        (entry.get("completions/mean_length", float("nan")), round(entry.get("reward", float("nan")), 6))
        for entry in log_history
        if "step_time" in entry
    ]


def run_leg(name: str, model_path: str, args: argparse.Namespace) -> tuple[list[float], list]:
    """One fresh trainer of side ``name``: its steady-state seconds per step (warm-up steps dropped) and the work
    of every step (:func:`work_done`)."""
    with tempfile.TemporaryDirectory() as tmp:
        history = RUNNERS[name](model_path, args.steps, args.completion_length, Path(tmp))
    times = step_times(history)[args.warmup :]
    logger.info("%s: %s s/step; %s", name, [round(t, 2) for t in times], reward_summary(history))
    return times, work_done(history)


def spread(values: list[float]) -> dict[str, float]:
    """Mean, median, quartiles and range (quartiles equal the median when there are fewer than 2 values)."""
    q1, q3 = values[0], values[0]
    if len(values) > 1:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {
        "mean": statistics.mean(values),
        "median": statistics.median(values),
        "q1": q1,
        "q3": q3,
        "min": min(values),
        "max": max(values),
    }


def measure(model_path: str, args: argparse.Namespace) -> None:
    times: dict[str, list[float]] = {name: [] for name in RUNNERS}
    ratios: list[float] = []
    same_work = True
    started = time.perf_counter()
    for repeat in range(args.repeats):
        # ABBA: drift on a shared machine (and anything that warms up over the process) hits both sides alike.
        legs, work = {}, {}
        for position, name in enumerate(["bare TRL", "posttrain", "posttrain", "bare TRL"]):
            logger.info("repeat %d/%d, leg %d/4: %s", repeat + 1, args.repeats, position + 1, name)
            legs[position], work[position] = run_leg(name, model_path, args)
            times[name].extend(legs[position])
        # Adjacent legs of the two sides ran the same prompts in the same order: pair their steps.
        for ours, bare in ((1, 0), (2, 3)):
            ratios += [o / b for o, b in zip(legs[ours], legs[bare], strict=True)]
            same_work &= work[ours] == work[bare]
    if not ratios:
        raise SystemExit(f"No steady-state steps to compare: raise --steps above --warmup ({args.warmup}).")

    header = (
        f"GRPO, {args.model}, 8 generations x {args.completion_length} tokens, {args.repeats} ABBA block(s) of "
        f"{args.steps} steps per leg, first {args.warmup} dropped ({time.perf_counter() - started:.0f} s in all)"
    )
    logger.info("\n%s", summary(header, times, ratios))
    logger.info(
        "Paired legs generated the same completions (per-step mean length and mean reward equal): %s",
        "yes" if same_work else "NO: the sides did different work, and the ratio compares it too",
    )


def summary(header: str, times: dict[str, list[float]], ratios: list[float]) -> str:
    """The result table: seconds per step of each side and the paired per-step ratio, with their spread."""
    lines = [header, f"{'s/step':<24}{'mean':>8}{'median':>8}{'q1':>8}{'q3':>8}{'min':>8}{'max':>8}{'n':>6}"]
    for label, values in {**times, "ratio posttrain / bare": ratios}.items():
        s = spread(values)
        cells = "".join(f"{s[k]:>8.3f}" for k in ("mean", "median", "q1", "q3", "min", "max"))
        lines.append(f"{label:<24}{cells}{len(values):>6}")
    of_means = statistics.mean(times["posttrain"]) / statistics.mean(times["bare TRL"])
    slower = sum(r > 1 for r in ratios)
    lines.append(
        f"ratio of means posttrain / bare TRL: {of_means:.3f} (overhead {100 * (of_means - 1):+.1f}%); "
        f"{slower} of {len(ratios)} paired steps slower with posttrain"
    )
    return "\n".join(lines)


# Phases of a GRPO step, by the function that runs each (TRL's, or posttrain's override, whichever encloses).
PHASES = {
    "whole step": "training_step",
    "generate + score": "_generate_and_score_completions",
    "generate": "_generate",
    "rewards (+ completion log)": "_calculate_rewards",
    "loss": "compute_loss",
    "backward": "backward",
}


def profile(model_path: str, args: argparse.Namespace) -> None:
    """One leg of each side under cProfile: top functions, phases side by side, the layer's own code."""
    stats: dict[str, pstats.Stats] = {}
    steps: dict[str, int] = {}
    for name in RUNNERS:
        profiler = cProfile.Profile()
        with tempfile.TemporaryDirectory() as tmp:
            history = profiler.runcall(
                RUNNERS[name], model_path, args.profile_steps, args.completion_length, Path(tmp)
            )
        stats[name], steps[name] = pstats.Stats(profiler), max(1, len(step_times(history)))
        logger.info(
            "%s under cProfile, %d steps, %s s/step (profiled, slower than real), top by cumulative time:\n%s",
            name,
            steps[name],
            [round(t, 2) for t in step_times(history)],
            _top(stats[name], args.profile_top),
        )
    lines = [f"{'phase, s/step':<30}{'bare TRL':>10}{'posttrain':>11}"]
    for phase, function in PHASES.items():
        cells = "".join(
            f"{_cumtime(stats[name], function) / steps[name]:>{width}.3f}"
            for name, width in (("bare TRL", 10), ("posttrain", 11))
        )
        lines.append(f"{phase:<30}{cells}")
    logger.info("Phases of a step, both sides (cumulative time per step):\n%s", "\n".join(lines))
    logger.info(
        "posttrain layer's own functions called during the steps (posttrain/, rewards/), by cumulative time:\n%s",
        _layer_table(stats["posttrain"], steps["posttrain"], args.profile_top),
    )


def _top(stats: pstats.Stats, count: int) -> str:
    out = io.StringIO()
    stats.stream = out
    stats.sort_stats("cumulative").print_stats(count)
    # Skip pstats' header lines (totals and ordering) down to the table.
    text = out.getvalue()
    return text[text.index("   ncalls") :].rstrip() if "   ncalls" in text else text


def _entries(stats: pstats.Stats):
    """(path, line, function, calls, cumulative seconds) of every profiled function."""
    for (filename, line, function), (_, calls, _, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        yield Path(filename), line, function, calls, cumtime


def _cumtime(stats: pstats.Stats, function: str) -> float:
    """Cumulative seconds of the outermost function named ``function`` (an override encloses its base)."""
    return max((cum for _, _, name, _, cum in _entries(stats) if name == function), default=float("nan"))


def _layer_table(stats: pstats.Stats, steps: int, count: int) -> str:
    # Called at least once per step: the per-step hooks, not one-off set-up such as recipe parsing.
    own = sorted(
        (cum, calls, f"{path.relative_to(REPO)}:{line}({function})")
        for path, line, function, calls, cum in _entries(stats)
        if calls >= steps and any(path.is_relative_to(REPO / package) for package in ("posttrain", "rewards"))
    )[::-1]
    lines = [f"{'cumulative s':>13}{'s/step':>9}{'calls':>8}  function"]
    lines += [f"{cum:>13.3f}{cum / steps:>9.3f}{calls:>8}  {where}" for cum, calls, where in own[:count]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per leg, warm-up included")
    parser.add_argument("--warmup", type=int, default=1, help="steps dropped at the start of every leg")
    parser.add_argument("--repeats", type=int, default=2, help="ABBA blocks (4 legs each)")
    parser.add_argument("--completion-length", type=int, default=32, help="max_completion_length")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument(
        "--profile", action="store_true", help="profile one leg per side instead of measuring"
    )
    parser.add_argument("--profile-steps", type=int, default=4)
    parser.add_argument("--profile-top", type=int, default=25, help="rows of each profile table")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from posttrain.models import resolve_model_path

    model_path = resolve_model_path(args.model)
    if args.profile:
        profile(model_path, args)
    else:
        measure(model_path, args)


if __name__ == "__main__":
    main()
