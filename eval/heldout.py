"""The held-out check a training run prints before and after: greedy completions on the test split,
scored by one reward function."""

from __future__ import annotations

import logging
from typing import Any

from datasets import Dataset

from posttrain.generation import generate_greedy, render_prompts

logger = logging.getLogger(__name__)


def score_heldout(
    model, tokenizer, dataset: Dataset, metric, *, max_new_tokens: int, batch_size: int, desc: str
) -> dict[str, Any]:
    """Mean of ``metric`` over greedy completions of ``dataset['prompt']`` (None scores are excluded)."""
    prompts = dataset["prompt"]
    completions = generate_greedy(
        model,
        tokenizer,
        render_prompts(tokenizer, dataset),
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        desc=desc,
    )
    columns = {k: dataset[k] for k in dataset.column_names if k != "prompt"}
    scores = metric(prompts=prompts, completions=completions, **columns)
    valid = [s for s in scores if s is not None]
    return {
        "metric": getattr(metric, "__name__", "metric"),
        "mean": sum(valid) / len(valid) if valid else float("nan"),
        "scored": len(valid),
        "samples": len(prompts),
        "examples": [
            {"completion": c, "score": s} for c, s in list(zip(completions, scores, strict=True))[:5]
        ],
    }
