"""What the posttrain layer costs on top of TRL: one GRPO configuration, run through `posttrain train` and
through a bare TRL script, alternately in one process, printing seconds per step and the ratio.

    python benchmarks/grpo_overhead.py [--steps 6] [--repeats 2]

Both sides use the embedded model, the same data rows, prompts, rewards and GRPOConfig; the posttrain side
adds what it always adds (recipe parsing, reward contract checks, the per-completion JSONL log). Seconds
per step are TRL's own `step_time` (generation, rewards, loss, backward), first step excluded as warm-up.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import yaml

logger = logging.getLogger("benchmark")

TEMPLATE = "{question}\nSolve it step by step, then give the final number on its own line as '#### <number>'."


def shared_settings(steps: int, output_dir: Path) -> dict:
    return {
        "beta": 0.0,
        "bf16": False,
        "learning_rate": 1.0e-6,
        "logging_steps": 1,
        "loss_type": "dapo",
        "max_completion_length": 32,
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


def run_posttrain(model_path: str, steps: int, workdir: Path) -> list[float]:
    from posttrain.recipe import load_recipe
    from posttrain.train import train

    recipe = {
        "method": "grpo",
        "model_name_or_path": model_path,
        "dataset_name": "gsm_symbolic",
        "max_train_samples": steps,
        "prompt_template": TEMPLATE,
        "reward_funcs": ["numeric_answer", "numeric_answer_format"],
        "dtype": "float32",
        **shared_settings(steps, workdir / "posttrain"),
    }
    path = workdir / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    results = train(load_recipe(path))
    return step_times(results["log_history"])


def run_bare_trl(model_path: str, steps: int, workdir: Path) -> list[float]:
    """The script a user would write by hand with TRL alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from posttrain.data import load_registered
    from rewards.math import numeric_answer, numeric_answer_format

    rows = load_registered("gsm_symbolic")["train"].shuffle(seed=7).select(range(steps))
    dataset = rows.map(lambda r: {"prompt": [{"role": "user", "content": TEMPLATE.format(**r)}]})
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    settings = shared_settings(steps, workdir / "bare")
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[numeric_answer, numeric_answer_format],
        args=GRPOConfig(**settings),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    return step_times(trainer.state.log_history)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from posttrain.models import resolve_model_path

    model_path = resolve_model_path(args.model)
    times: dict[str, list[float]] = {"bare TRL": [], "posttrain": []}
    # Same seed, same prompts: step i of one side generates what step i of the other does, so pair them.
    paired: list[float] = []
    started = time.perf_counter()
    for repeat in range(args.repeats):
        # Alternate the order so drift on a shared machine hits both sides alike.
        order = [("bare TRL", run_bare_trl), ("posttrain", run_posttrain)]
        measured = {}
        for name, run in order if repeat % 2 == 0 else reversed(order):
            with tempfile.TemporaryDirectory() as tmp:
                measured[name] = run(model_path, args.steps, Path(tmp))[1:]  # first step warms caches
            times[name].extend(measured[name])
            logger.info("%s repeat %d: %s s/step", name, repeat, [round(t, 2) for t in measured[name]])
        paired += [
            ours / bare for ours, bare in zip(measured["posttrain"], measured["bare TRL"], strict=True)
        ]

    bare, ours = statistics.mean(times["bare TRL"]), statistics.mean(times["posttrain"])
    lines = [
        f"GRPO, {args.model}, 8 generations x 32 tokens, {args.steps} steps x {args.repeats} repeats "
        f"({time.perf_counter() - started:.0f} s in all)",
        f"{'runner':<12}{'s/step mean':>14}{'median':>10}{'steps':>8}",
    ]
    for name, values in times.items():
        lines.append(
            f"{name:<12}{statistics.mean(values):>14.2f}{statistics.median(values):>10.2f}{len(values):>8}"
        )
    lines.append(
        f"ratio of means posttrain / bare TRL: {ours / bare:.3f} (overhead {100 * (ours / bare - 1):+.1f}%)"
    )
    lines.append(
        f"median of paired per-step ratios: {statistics.median(paired):.3f} "
        f"(overhead {100 * (statistics.median(paired) - 1):+.1f}%, {len(paired)} pairs)"
    )
    logger.info("\n%s", "\n".join(lines))


if __name__ == "__main__":
    main()
