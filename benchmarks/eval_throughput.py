"""Batch evaluation throughput: `posttrain eval` with vLLM, with HF generation, and bare `vllm.LLM.generate`.

    python benchmarks/eval_throughput.py [--prompts 256] [--hf-prompts 32] [--n 4] [--max-new-tokens 128]

All three generate for the same real prompts (GSM-Symbolic, held-out split, chat template) with the same
sampling, each in its own process; throughput is generated tokens per second of generation (engine start-up
excluded). HF runs on fewer prompts (it is the slow path); its tokens per second are comparable all the same.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("benchmark")

TEMPLATE = "{question}\nSolve it step by step, then give the final number on its own line as '#### <number>'."


def run_posttrain(engine: str, prompts: int, n: int, max_new_tokens: int, out: Path) -> dict:
    from eval.runner import EvalArguments, run_eval
    from posttrain.configs import DataArguments

    args = EvalArguments(
        model_name_or_path="smollm2-135m-instruct",
        scorers=["numeric_answer"],
        answer_parser="number",
        max_samples=prompts,
        n=n,
        temperature=0.8,
        max_new_tokens=max_new_tokens,
        engine=engine,
        chunk_size=prompts,  # one generation call, as bare vLLM gets
        output_dir=str(out),
    )
    run_eval(args, DataArguments(dataset_name="gsm_symbolic", prompt_template=TEMPLATE))
    return json.loads((out / "throughput.rank0.json").read_text())


def run_bare_vllm(prompts: int, n: int, max_new_tokens: int) -> dict:
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    from posttrain.data import load_registered
    from posttrain.models import resolve_model_path
    from posttrain.rollout import configure_cpu_engine

    configure_cpu_engine(0.3)
    model = resolve_model_path("smollm2-135m-instruct")
    rows = load_registered("gsm_symbolic")["test"].shuffle(seed=0).select(range(prompts))
    tokenizer = AutoTokenizer.from_pretrained(model)
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": TEMPLATE.format(**r)}], tokenize=False, add_generation_prompt=True
        )
        for r in rows
    ]
    llm = LLM(model=model, seed=0)
    start = time.perf_counter()
    outputs = llm.generate(
        texts, SamplingParams(n=n, temperature=0.8, max_tokens=max_new_tokens), use_tqdm=False
    )
    seconds = time.perf_counter() - start
    return {"generated_tokens": sum(len(c.token_ids) for o in outputs for c in o.outputs), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--hf-prompts", type=int, default=32)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--only", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    if args.only:
        with tempfile.TemporaryDirectory() as tmp:
            if args.only == "bare":
                result = run_bare_vllm(args.prompts, args.n, args.max_new_tokens)
            else:
                prompts = args.hf_prompts if args.only == "hf" else args.prompts
                result = run_posttrain(args.only, prompts, args.n, args.max_new_tokens, Path(tmp))
        Path(args.result).write_text(json.dumps(result))
        return

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("bare", "vllm", "hf"):
            out = Path(tmp, f"{name}.json")
            flags = ["--prompts", str(args.prompts), "--hf-prompts", str(args.hf_prompts), "--n", str(args.n)]
            flags += ["--max-new-tokens", str(args.max_new_tokens), "--only", name, "--result", str(out)]
            subprocess.run([sys.executable, __file__, *flags], check=True)
            results[name] = json.loads(out.read_text())
    tps = {k: v["generated_tokens"] / v["seconds"] for k, v in results.items()}
    labels = {"bare": "bare vllm.LLM.generate", "vllm": "posttrain eval, vLLM", "hf": "posttrain eval, HF"}
    lines = [
        f"smollm2-135m-instruct on GSM-Symbolic test, n={args.n}, up to {args.max_new_tokens} new tokens, "
        f"temperature 0.8 ({args.prompts} prompts; HF {args.hf_prompts})",
        f"{'engine':<26}{'tokens':>9}{'seconds':>9}{'tok/s':>8}",
    ]
    for key, label in labels.items():
        r = results[key]
        lines.append(f"{label:<26}{r['generated_tokens']:>9}{r['seconds']:>9.1f}{tps[key]:>8.0f}")
    lines.append(f"posttrain vLLM / bare vLLM: {tps['vllm'] / tps['bare']:.3f}")
    lines.append(f"posttrain vLLM / posttrain HF: {tps['vllm'] / tps['hf']:.2f}x")
    logger.info("\n%s", "\n".join(lines))


if __name__ == "__main__":
    main()
