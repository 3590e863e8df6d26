"""Generation throughput of the shared service (posttrain.generation) against bare vLLM and bare HF generate.

    python benchmarks/generation.py                       # 32 prompts x 4 samples x 64 new tokens
    python benchmarks/generation.py --rollout             # GRPO rollout size: 1 prompt x 8 samples x 128 tokens
    python benchmarks/generation.py --prompts 8 --n 2 --max-new-tokens 32 --legs shared-hf-bf16,bare-hf-bf16
    python benchmarks/generation.py --invariance          # how often batching changes a seeded sample

Every leg generates for the same real chat prompts (a registered dataset's test split through the embedded
model's chat template) at the same temperature, in its own process, one after the other. A leg reports its
start-up (loading the model or starting the engine), a warm-up call (two prompts, 8 tokens: for vLLM the first
call after start-up, where a compiled engine compiles) and then one timed call over all prompts; tokens/s is
that call's generated tokens over its seconds. Bare legs are what a user would write: ``vllm.LLM.generate`` with
``n`` samples a request (same CPU settings as the shared engine: bfloat16, eager, no thread binding, but vLLM's
default chunked prefill and no per-request seeds), and HF ``model.generate`` with ``do_sample=True`` in batches of
16 prompts. The ratio column is shared/bare for the same engine and dtype.

``--invariance`` instead generates the prompts with each shared engine twice, once in one batch (16 prompts a
batch for HF) and once one prompt per call, and counts the samples that differ.

Under load from other processes every figure drops several-fold: run on a quiet machine and compare ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from posttrain.data import load_registered
from posttrain.generation import Sampling, make_engine, render_prompt
from posttrain.models import resolve_model_path
from posttrain.rollout import configure_cpu_engine

logger = logging.getLogger("benchmark")

MODEL = "smollm2-135m-instruct"
TEMPLATES = {
    "gsm_symbolic": "{question}\nSolve it step by step, then give the final number as '#### <number>'.",
    "qa_wikidata": "{question}",
}
SHARED_LEGS = ("shared-hf-fp32", "shared-hf-bf16", "shared-vllm")
BARE_LEGS = ("bare-hf-fp32", "bare-hf-bf16", "bare-vllm")
BARE_OF = {"shared-hf-fp32": "bare-hf-fp32", "shared-hf-bf16": "bare-hf-bf16", "shared-vllm": "bare-vllm"}


def chat_prompts(dataset: str, count: int) -> list[str]:
    """``count`` rendered chat prompts from the test split of a registered dataset (a fixed, seeded subset)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(MODEL))
    rows = load_registered(dataset)["test"].shuffle(seed=0).select(range(count))
    return [
        render_prompt(tokenizer, [{"role": "user", "content": TEMPLATES[dataset].format(**row)}])
        for row in rows
    ]


def timed(fn, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def run_shared(leg: str, prompts: list[str], args: argparse.Namespace) -> dict:
    name, dtype = {
        "shared-hf-fp32": ("hf", "float32"),
        "shared-hf-bf16": ("hf", "bfloat16"),
        "shared-vllm": ("vllm", "auto"),
    }[leg]
    engine, startup = timed(
        make_engine, name, resolve_model_path(MODEL), dtype=dtype, batch_size=args.batch_size
    )
    sampling = Sampling(n=args.n, temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=0)
    warm = Sampling(n=args.n, temperature=args.temperature, max_new_tokens=8, seed=1)
    _, warmup = timed(engine.generate, prompts[:2], warm)
    _, seconds = timed(engine.generate, prompts, sampling)
    return {"startup": startup, "warmup": warmup, "seconds": seconds, "tokens": engine.last_tokens}


def run_bare_hf(dtype: str, prompts: list[str], args: argparse.Namespace) -> dict:
    def load():
        path = resolve_model_path(MODEL)
        tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval(), tokenizer

    (model, tokenizer), startup = timed(load)

    @torch.no_grad()
    def generate(texts: list[str], max_new_tokens: int) -> int:
        tokens = 0
        for start in range(0, len(texts), args.batch_size):
            batch = tokenizer(
                texts[start : start + args.batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            out = model.generate(
                **batch,
                do_sample=True,
                temperature=args.temperature,
                top_p=1.0,
                top_k=0,
                num_return_sequences=args.n,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
            tokens += int((out[:, batch["input_ids"].shape[1] :] != tokenizer.pad_token_id).sum())
        return tokens

    torch.manual_seed(0)
    _, warmup = timed(generate, prompts[:2], 8)
    tokens, seconds = timed(generate, prompts, args.max_new_tokens)
    return {"startup": startup, "warmup": warmup, "seconds": seconds, "tokens": tokens}


def run_bare_vllm(prompts: list[str], args: argparse.Namespace) -> dict:

    def start():
        from vllm import LLM  # importing vLLM takes seconds: part of its start-up, as in the shared leg

        configure_cpu_engine(0.3)
        return LLM(
            model=resolve_model_path(MODEL),
            dtype=args.vllm_dtype,
            enforce_eager=not args.vllm_compiled,
            seed=0,
        )

    llm, startup = timed(start)
    from vllm import SamplingParams

    warm = SamplingParams(n=args.n, temperature=args.temperature, max_tokens=8)
    _, warmup = timed(llm.generate, prompts[:2], warm, use_tqdm=False)
    params = SamplingParams(n=args.n, temperature=args.temperature, max_tokens=args.max_new_tokens)
    outputs, seconds = timed(llm.generate, prompts, params, use_tqdm=False)
    tokens = sum(len(c.token_ids) for out in outputs for c in out.outputs)
    return {"startup": startup, "warmup": warmup, "seconds": seconds, "tokens": tokens}


def run_invariance(leg: str, prompts: list[str], args: argparse.Namespace) -> dict:
    """Samples that differ between generating all prompts in one call (batches of 16) and one prompt a call."""
    name, dtype = {"shared-hf-fp32": ("hf", "float32"), "shared-hf-bf16": ("hf", "bfloat16")}.get(
        leg, ("vllm", "auto")
    )
    engine = make_engine(name, resolve_model_path(MODEL), dtype=dtype, batch_size=16)
    sampling = Sampling(n=args.n, temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=0)
    together = engine.generate(prompts, sampling)
    alone = [engine.generate([p], sampling)[0] for p in prompts]
    pairs = [
        (a, b)
        for group_a, group_b in zip(together, alone, strict=True)
        for a, b in zip(group_a, group_b, strict=True)
    ]
    return {"samples": len(pairs), "differ": sum(a != b for a, b in pairs)}


def run_leg(leg: str, args: argparse.Namespace) -> dict:
    prompts = chat_prompts(args.dataset, args.prompts)
    if args.invariance:
        return run_invariance(leg, prompts, args)
    if leg in SHARED_LEGS:
        return run_shared(leg, prompts, args)
    if leg == "bare-vllm":
        return run_bare_vllm(prompts, args)
    return run_bare_hf("float32" if leg == "bare-hf-fp32" else "bfloat16", prompts, args)


def table(results: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [
        f"{MODEL}, {args.dataset} test prompts: {args.prompts} prompts x {args.n} samples x up to "
        f"{args.max_new_tokens} new tokens, temperature {args.temperature}",
        f"{'leg':<16}{'start-up s':>11}{'warm-up s':>10}{'tokens':>8}{'seconds':>9}{'tok/s':>8}{'shared/bare':>12}",
    ]
    for leg, r in results.items():
        rate = r["tokens"] / r["seconds"]
        bare = results.get(BARE_OF.get(leg, ""))
        ratio = f"{rate / (bare['tokens'] / bare['seconds']):.2f}" if bare else "-"
        lines.append(
            f"{leg:<16}{r['startup']:>11.1f}{r['warmup']:>10.1f}{r['tokens']:>8}{r['seconds']:>9.1f}"
            f"{rate:>8.0f}{ratio:>12}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rollout", action="store_true", help="GRPO rollout size: 1 prompt x 8 x 128 tokens")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per HF generate call")
    parser.add_argument("--dataset", choices=sorted(TEMPLATES), default="gsm_symbolic")
    parser.add_argument("--legs", default=",".join(SHARED_LEGS + BARE_LEGS), help="comma-separated legs")
    parser.add_argument("--vllm-dtype", default="bfloat16", help="bare vLLM leg's dtype")
    parser.add_argument("--vllm-compiled", action="store_true", help="bare vLLM leg without enforce_eager")
    parser.add_argument("--invariance", action="store_true", help="count samples that batching changes")
    parser.add_argument("--leg", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rollout:
        args.prompts, args.n, args.max_new_tokens = 1, 8, 128
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    if args.leg:
        Path(args.result).write_text(json.dumps(run_leg(args.leg, args)))
        return

    legs = [leg for leg in args.legs.split(",") if leg]
    unknown = set(legs) - set(SHARED_LEGS + BARE_LEGS)
    if unknown or (args.invariance and set(legs) - set(SHARED_LEGS)):
        parser.error(
            f"unknown legs {sorted(unknown)}; legs are {SHARED_LEGS + BARE_LEGS} (shared ones only with --invariance)"
        )
    if args.invariance and args.legs == parser.get_default("legs"):
        legs = list(SHARED_LEGS)
    forwarded = [f"--prompts={args.prompts}", f"--n={args.n}", f"--max-new-tokens={args.max_new_tokens}"]
    forwarded += [f"--temperature={args.temperature}", f"--batch-size={args.batch_size}"]
    forwarded += [f"--dataset={args.dataset}", f"--vllm-dtype={args.vllm_dtype}"]
    forwarded += ["--vllm-compiled"] * args.vllm_compiled + ["--invariance"] * args.invariance
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for leg in legs:
            out = Path(tmp, f"{leg}.json")
            logger.info("Leg %s", leg)
            command = [sys.executable, __file__, *forwarded, "--leg", leg, "--result", str(out)]
            subprocess.run(command, check=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            results[leg] = json.loads(out.read_text())
            logger.info("Leg %s: %s", leg, results[leg])
    if args.invariance:
        for leg, r in results.items():
            print(
                f"{leg}: {r['differ']} of {r['samples']} samples differ between one batch and one prompt a call"
            )
    else:
        print(table(results, args))


if __name__ == "__main__":
    main()
