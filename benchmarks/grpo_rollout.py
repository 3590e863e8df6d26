"""GRPO with HF generation vs vLLM rollout on this machine, plus bare `vllm.LLM.generate` on the same prompts.

    python benchmarks/grpo_rollout.py [--steps 4] [--model smollm2-135m-instruct]

One GRPO configuration, the size of recipes/gsm_symbolic/grpo_cpu_vllm.yaml (1 prompt x 8 generations per
step, up to 128 new tokens, beta 0, dapo loss), runs through `posttrain
train` with `rollout: hf` and with `rollout: vllm_colocate` (with and without TRL's importance-sampling
correction, which costs one extra forward), each in its own process. The table gives seconds per step (first
step excluded), generation seconds and generated tokens per second inside the step, the weight-sync cost,
and the ratios; then bare vLLM's throughput on the same prompts, the physical limit for the rollout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

logger = logging.getLogger("benchmark")

TEMPLATE = "{question}\nSolve it step by step, then give the final number on its own line as '#### <number>'."
MAX_NEW_TOKENS = 128
GENERATIONS = 8


def recipe(model: str, steps: int, output_dir: str, rollout: str, is_correction: bool) -> dict:
    return {
        "method": "grpo",
        "output_dir": output_dir,
        "model_name_or_path": model,
        "dtype": "float32",
        "dataset_name": "gsm_symbolic",
        "max_train_samples": steps,
        "prompt_template": TEMPLATE,
        "reward_funcs": ["numeric_answer", {"name": "numeric_answer_format", "weight": 0.2}],
        "beta": 0.0,
        "loss_type": "dapo",
        "scale_rewards": "group",
        "num_generations": GENERATIONS,
        "per_device_train_batch_size": GENERATIONS,
        "max_completion_length": MAX_NEW_TOKENS,
        "max_steps": steps,
        "learning_rate": 1.0e-6,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 7,
        "temperature": 1.0,
        "use_cpu": True,
        "rollout": rollout,
        "rollout_memory_share": 0.1,
        "vllm_importance_sampling_correction": is_correction,
    }


def run_training(model: str, steps: int, rollout: str, is_correction: bool) -> dict:
    """One training run in this process; returns per-step times and TRL's profiled sections."""
    import yaml
    from trl.extras import profiling

    from posttrain.recipe import load_recipe
    from posttrain.train import train

    sections: dict[str, list[float]] = defaultdict(list)
    original = profiling.ProfilingContext._log_metrics

    def record(self, duration: float) -> None:  # TRL only sends these to trackers; keep them here
        sections[self.name.split(".", 1)[1]].append(duration)
        original(self, duration)

    profiling.ProfilingContext._log_metrics = record
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "recipe.yaml")
        path.write_text(yaml.safe_dump(recipe(model, steps, str(Path(tmp, "out")), rollout, is_correction)))
        results = train(load_recipe(path))
    history = [e for e in results["log_history"] if "step_time" in e]
    return {
        "step_time": [e["step_time"] for e in history],
        "mean_length": [e["completions/mean_length"] for e in history],
        "sections": dict(sections),
    }


def run_bare_vllm(model: str, steps: int) -> dict:
    """`vllm.LLM.generate` alone on the same prompts and sampling settings."""
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    from posttrain.data import load_registered
    from posttrain.rollout import configure_cpu_engine

    configure_cpu_engine(0.1)
    rows = load_registered("gsm_symbolic")["train"].shuffle(seed=7).select(range(steps))
    tokenizer = AutoTokenizer.from_pretrained(model)
    prompts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": TEMPLATE.format(**r)}], tokenize=False, add_generation_prompt=True
        )
        for r in rows
    ]
    llm = LLM(model=model, seed=7, max_model_len=1024)
    params = SamplingParams(n=GENERATIONS, temperature=1.0, max_tokens=MAX_NEW_TOKENS)
    llm.generate(prompts[:1], params, use_tqdm=False)  # warm-up, like the first training step
    seconds, tokens = [], []
    for prompt in prompts[1:]:  # one prompt x 8 completions per call, as in a training step
        start = time.perf_counter()
        outputs = llm.generate([prompt], params, use_tqdm=False)
        seconds.append(time.perf_counter() - start)
        tokens.append(sum(len(c.token_ids) for o in outputs for c in o.outputs))
    return {"seconds": seconds, "tokens": tokens}


def child(args: argparse.Namespace) -> None:
    from posttrain.models import resolve_model_path

    model = resolve_model_path(args.model)
    if args.only == "bare_vllm":
        result = run_bare_vllm(model, args.steps)
    else:
        rollout, _, correction = args.only.partition(":")
        result = run_training(model, args.steps, rollout, correction != "no_is")
    Path(args.result).write_text(json.dumps(result))


def summarize(name: str, result: dict) -> dict:
    steps = result["step_time"][1:]
    sections = result["sections"]
    gen_key = "vLLM.generate" if "vLLM.generate" in sections else "transformers.generate"
    gen = sections.get(gen_key, [])[1:]
    tokens = [length * GENERATIONS for length in result["mean_length"][1:]]
    sync = sections.get("sync_weights", [])[1:]
    logps = sections.get("_get_per_token_logps_and_entropies", [])
    return {
        "name": name,
        "s_per_step": statistics.mean(steps),
        "gen_s": statistics.mean(gen) if gen else float("nan"),
        "tok_per_s": sum(tokens) / sum(gen) if gen else float("nan"),
        "sync_s": statistics.mean(sync) if sync else 0.0,
        "logp_fwd_s": sum(logps) / max(1, len(result["step_time"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--only", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.only:
        child(args)
        return

    runs = {"hf": "hf", "vllm colocate": "vllm_colocate", "vllm colocate, no IS": "vllm_colocate:no_is"}
    results = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, only in [*runs.items(), ("bare vllm", "bare_vllm")]:
            out = Path(tmp, "result.json")
            command = [sys.executable, __file__, "--steps", str(args.steps), "--model", args.model]
            subprocess.run([*command, "--only", only, "--result", str(out)], check=True, env=dict(os.environ))
            results[name] = json.loads(out.read_text())
            logger.info("%s done", name)

    rows = [summarize(name, results[name]) for name in runs]
    hf = rows[0]
    bare = results["bare vllm"]
    bare_tps = sum(bare["tokens"]) / sum(bare["seconds"])
    lines = [
        f"GRPO on {args.model}, CPU, {GENERATIONS} generations x up to {MAX_NEW_TOKENS} tokens, beta 0, "
        f"{args.steps} steps (first excluded), {time.perf_counter() - started:.0f} s in all",
        f"{'rollout':<22}{'s/step':>8}{'gen s':>8}{'gen tok/s':>11}{'sync s':>8}{'logp fwd s':>11}{'step x':>8}",
    ]
    for row in rows:
        lines.append(
            f"{row['name']:<22}{row['s_per_step']:>8.1f}{row['gen_s']:>8.1f}{row['tok_per_s']:>11.0f}"
            f"{row['sync_s']:>8.2f}{row['logp_fwd_s']:>11.1f}{hf['s_per_step'] / row['s_per_step']:>8.2f}"
        )
    for row in rows[1:]:
        lines.append(f"generation s/step, hf / {row['name']}: {hf['gen_s'] / row['gen_s']:.2f}x (goal: 3x)")
    lines.append(f"bare vllm.LLM.generate, same prompts: {bare_tps:.0f} tok/s")
    for row in rows[1:]:
        lines.append(f"{row['name']} rollout throughput / bare vLLM: {row['tok_per_s'] / bare_tps:.2f}")
    logger.info("\n%s", "\n".join(lines))


if __name__ == "__main__":
    main()
