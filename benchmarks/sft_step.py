"""One LoRA SFT step of the embedded SmolLM2-135M-Instruct on this CPU, by the loss path: the model's own
cross-entropy (what ``PosttrainSFTTrainer`` uses on a CPU) against TRL's fused LM head (what TRL's SFTTrainer
uses everywhere), each with LoRA dropout 0.05 (most CPU recipes) and 0.

    python benchmarks/sft_step.py [--repeats 2] [--batch 8] [--tokens 384] [--no-bf16]

All four models are built first (same seed, same batch of random tokens whose first half is prompt, loss on the
rest); then each repeat times one forward and backward of each, in alternating order, after a warm-up round. Prints
the medians, the ratio of each to TRL's path with dropout, and the loss of each (equal: the paths compute the same
loss).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
from trl.trainer.utils import add_fused_lm_head

from posttrain.models import resolve_model_path

logger = logging.getLogger("benchmark")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build(path: str, dropout: float, fused: bool):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if fused:  # as TRL's SFTTrainer patches the base model before PEFT wraps it
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=dropout, target_modules=TARGETS, task_type="CAUSAL_LM"
    )
    return get_peft_model(model, lora).train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=384)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    path = str(resolve_model_path("smollm2-135m-instruct"))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 40000, (args.batch, args.tokens), generator=generator)
    labels = ids.clone()
    labels[:, : args.tokens // 2] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    legs = {
        f"{'TRL fused head' if fused else 'model loss (ours)'}, dropout {dropout}": (
            build(path, dropout, fused),
            fused,
        )
        for fused in (True, False)
        for dropout in (0.05, 0.0)
    }

    def step(model, fused: bool) -> float:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = (
                model(**batch, use_cache=False, fused_lm_head=True)
                if fused
                else model(**batch, use_cache=False)
            )
        out.loss.backward()
        return out.loss.item()

    times: dict[str, list[float]] = {name: [] for name in legs}
    losses: dict[str, float] = {}
    names = list(legs)
    for repeat in range(args.repeats + 1):
        for name in names if repeat % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            losses[name] = step(*legs[name])
            seconds = time.perf_counter() - start
            logger.info("round %d, %s: %.2f s", repeat, name, seconds)
            if repeat:  # round 0 warms up
                times[name].append(seconds)
    base = statistics.median(times[names[0]])
    lines = [
        f"LoRA step, {args.batch} x {args.tokens} tokens, {'bf16 autocast' if args.bf16 else 'float32'}, "
        f"median of {args.repeats}:",
        f"{'path':<36}{'s/step':>8}{'ratio':>8}{'loss':>10}",
    ]
    for name in names:
        median = statistics.median(times[name])
        lines.append(f"{name:<36}{median:>8.2f}{median / base:>8.3f}{losses[name]:>10.4f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
