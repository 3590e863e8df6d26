"""DeconfoundLM's best-of-n stage: the model samples ``best_of`` completions of each training prompt (through the
shared generation service), the learned reward scores them, and the best becomes the prompt's SFT target.

Each output row is the source row plus ``completion`` (the chosen completion, as an assistant message),
``candidates`` (every sample) and ``candidate_rewards`` (their scores). The stage runs on the shared runner
(:mod:`posttrain.stages`): sharded by rank, resumable, summarised in ``summary.json`` (the mean reward of the chosen
completions against that of all samples: what selection gained).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from posttrain.formatting import row_prompt
from posttrain.generation import Sampling
from posttrain.stages import Stage, StageContext
from rewards.contract import score_completions
from rewards.registry import load_reward_functions

TARGET_COLUMN = "completion"


@functools.cache
def _reward(spec_json: str, base_dir: Path) -> Any:
    (fn,), _ = load_reward_functions([json.loads(spec_json)], base_dir=base_dir)
    return fn


def selection_reward(recipe: Any) -> Any:
    """The recipe's selection reward, loaded once per spec."""
    return _reward(json.dumps(recipe.trainer.selection_reward, sort_keys=True), recipe.base_dir)


def best_index(scores: list[float | None]) -> int:
    """The best-scored candidate (the first of a tie); a candidate the reward does not score (None) is never best
    unless none is scored."""
    ranked = [-np.inf if s is None else s for s in scores]
    return int(np.argmax(ranked))


def choose_best(rows: list[dict[str, Any]], context: StageContext) -> list[dict[str, Any] | None]:
    """Sample ``best_of`` completions of each row's prompt, score them, keep the best as the target."""
    recipe = context.recipe
    args = recipe.trainer
    prompts = [row_prompt(recipe.data, row) for row in rows]
    sampling = Sampling(
        n=args.best_of,
        temperature=args.sample_temperature,
        max_new_tokens=args.sample_max_new_tokens,
        seed=args.seed,
    )
    samples = context.generate(prompts, sampling, expected_rows=recipe.data.max_train_samples)
    flat_prompts = [p for p, group in zip(prompts, samples, strict=True) for _ in group]
    flat = [s.strip() for group in samples for s in group]
    columns = (
        {name: [row[name] for row in rows for _ in range(args.best_of)] for name in rows[0]} if rows else {}
    )
    scores = score_completions(selection_reward(recipe), flat_prompts, flat, columns)
    out = []
    for i, row in enumerate(rows):
        candidates = flat[i * args.best_of : (i + 1) * args.best_of]
        rewards = scores[i * args.best_of : (i + 1) * args.best_of]
        best = best_index(rewards)
        out.append(
            {
                **row,
                TARGET_COLUMN: [{"role": "assistant", "content": candidates[best]}],
                "candidates": candidates,
                "candidate_rewards": rewards,
            }
        )
    return out


def selection_gain(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows built, the mean reward of the chosen completions and of all candidates (what selection gained)."""
    chosen, every = [], []
    for row in rows:
        scored = [s for s in row["candidate_rewards"] if s is not None]
        if scored:
            chosen.append(max(scored))
            every += scored
    return {
        "rows": len(rows),
        "mean_chosen_reward": float(np.mean(chosen)) if chosen else None,
        "mean_candidate_reward": float(np.mean(every)) if every else None,
    }


def stage_settings(recipe: Any) -> dict[str, Any]:
    args = recipe.trainer
    names = ("best_of", "selection_reward", "sample_max_new_tokens", "sample_temperature")
    return {name: getattr(args, name) for name in names}


BEST_OF_N_STAGE = Stage(
    name="best_of_n",
    run=choose_best,
    uses_model=True,
    batch_size=32,
    description="The model samples best_of completions per prompt; the selection reward keeps the best as the target.",
    writes={
        TARGET_COLUMN: [{"role": "assistant", "content": "A completion."}],
        "candidates": ["A completion."],
        "candidate_rewards": [0.0],
    },
    summary=selection_gain,
    settings=stage_settings,
)

STAGES = (BEST_OF_N_STAGE,)


def check_deconfound_recipe(recipe: Any) -> list[str]:
    """Best-of-n writes its own targets from chat prompts, and its selection reward must load."""
    errors = []
    data = recipe.data
    if data.completion_template:
        errors.append(
            "method deconfound picks each row's target from the model's samples: drop completion_template "
            f"({data.completion_template!r})."
        )
    if not data.prompt_template:
        errors.append(
            "method deconfound needs prompt_template: the request the model answers, e.g. '{request}'."
        )
    if data.prompt_format != "chat":
        errors.append("method deconfound asks the model in chat form: set prompt_format to chat.")
    try:
        selection_reward(recipe)
    except (ValueError, TypeError) as err:
        errors.append(f"selection_reward: {err}")
    return errors
