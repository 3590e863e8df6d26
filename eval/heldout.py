"""The held-out check a training run prints before and after: greedy completions on the test split,
scored by one reward function."""

from __future__ import annotations

import logging
from typing import Any

from datasets import Dataset

from posttrain.generation import generate_greedy, render_prompts
from rewards.contract import score_completions

logger = logging.getLogger(__name__)


def score_heldout(
    model,
    tokenizer,
    dataset: Dataset,
    metric,
    *,
    max_new_tokens: int,
    batch_size: int,
    desc: str,
    step: int = 0,
) -> dict[str, Any]:
    """Mean of ``metric`` over greedy completions of ``dataset['prompt']`` (None scores are excluded), the metric
    called as training calls a reward (:func:`rewards.contract.score_completions`; ``step``: the model's)."""
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
    scores = score_completions(metric, prompts, completions, columns, step=step, tokenizer=tokenizer)
    valid = [s for s in scores if s is not None]
    return {
        "metric": getattr(metric, "__name__", "metric"),
        "mean": sum(valid) / len(valid) if valid else float("nan"),
        "scored": len(valid),
        "samples": len(prompts),
        # The first rows whole: the prompt, the gold and other small columns, the completion and its score.
        "examples": [
            {
                "prompt": prompts[i],
                **{k: v[i] for k, v in columns.items() if isinstance(v[i], (str, int, float, bool))},
                "completion": completions[i],
                "score": scores[i],
            }
            for i in range(min(5, len(prompts)))
        ],
    }
