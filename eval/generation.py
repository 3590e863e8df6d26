"""Batched greedy generation with a Hugging Face model, the engine that works everywhere.

Used by the trainer's held-out check; prompts are chat messages (rendered by the tokenizer's chat template)
or plain strings.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)


def render_prompt(tokenizer, prompt: Any, response_prefix: str | None = None) -> str:
    """Chat messages through the chat template (with the assistant turn opened and ``response_prefix``
    written into it), strings unchanged (a raw prompt already ends with its prefix)."""
    if isinstance(prompt, str):
        return prompt
    if response_prefix:
        opened = [*prompt, {"role": "assistant", "content": response_prefix}]
        return tokenizer.apply_chat_template(opened, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def render_prompts(tokenizer, dataset, indices: Sequence[int] | None = None) -> list[str]:
    """The rendered prompts of a formatted dataset's rows, each with its row's ``response_prefix``."""
    indices = range(len(dataset)) if indices is None else indices
    prefixes = dataset["response_prefix"] if "response_prefix" in dataset.column_names else None
    prompts = dataset["prompt"]
    return [render_prompt(tokenizer, prompts[i], prefixes[i] if prefixes else None) for i in indices]


def generate_greedy(
    model,
    tokenizer,
    prompts: Sequence[Any],
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    desc: str = "Generating",
) -> list[str]:
    """One greedy completion per prompt, decoded without special tokens (the HF engine, n=1)."""
    from eval.engines import HFEngine, Sampling

    texts = [render_prompt(tokenizer, p) for p in prompts]
    engine = HFEngine("", seed=0, batch_size=batch_size, model=model, tokenizer=tokenizer)
    sampling = Sampling(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    return [group[0] for group in engine.generate(texts, sampling, desc=desc)]
