"""ConfTuner's data stage: the model answers its training questions itself (greedy, through the shared generation
service) and a judge marks each answer right or wrong.

Each output row is the source row plus ``completion`` (the model's own answer, cut before any confidence it
stated) and ``correct`` (1 or 0); a row the judge cannot mark (no gold answer) is dropped. The trainer turns a row
into prompt + answer + ``Confidence (0-N):`` with ``correct`` as its label. The stage runs on the shared runner
(:mod:`posttrain.stages`): sharded by rank, resumable, and summarised in ``summary.json`` beside the built set.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from posttrain.formatting import row_prompt
from posttrain.generation import Sampling
from posttrain.stages import Stage, StageContext
from posttrain.templates import template_columns
from rewards.judges import Judge, load_judge
from rewards.qa import answer_part

ANSWER_COLUMN = "completion"
LABEL_COLUMN = "correct"


@functools.cache
def _judge(spec: str, base_dir: Path) -> Judge:
    return load_judge(spec, base_dir=base_dir)


def own_answer(text: str) -> str:
    """The answer a generation gives: its text before any confidence label, without surrounding whitespace."""
    return answer_part(text).strip()


def answer_and_judge(rows: list[dict[str, Any]], context: StageContext) -> list[dict[str, Any] | None]:
    """One greedy answer per row from the recipe's model, and the judge's verdict on it."""
    recipe = context.recipe
    args = recipe.trainer
    prompts = [row_prompt(recipe.data, row) for row in rows]
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=args.answer_max_new_tokens, seed=args.seed)
    answers = [own_answer(samples[0]) for samples in context.generate(prompts, greedy)]
    verdicts = _judge(args.judge, recipe.base_dir)(prompts, answers, rows)
    return [
        None if verdict is None else {**row, ANSWER_COLUMN: answer, LABEL_COLUMN: int(verdict)}
        for row, answer, verdict in zip(rows, answers, verdicts, strict=True)
    ]


def judge_columns(recipe: Any) -> set[str]:
    """The source columns the recipe's judge reads (the gold answer, its aliases)."""
    return _judge(recipe.trainer.judge, recipe.base_dir).columns


def answer_statistics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the built set holds: rows, the model's accuracy on its own answers, the count per label, and how many
    answers were empty."""
    right = sum(row[LABEL_COLUMN] for row in rows)
    return {
        "rows": len(rows),
        "accuracy": right / len(rows) if rows else None,
        "per_label": {"1": right, "0": len(rows) - right},
        "empty_answers": sum(not row[ANSWER_COLUMN] for row in rows),
    }


ANSWER_STAGE = Stage(
    name="answers",
    run=answer_and_judge,
    uses_model=True,
    batch_size=64,
    description="The model answers each training question (greedy); the judge marks each answer right or wrong.",
    reads=judge_columns,
    writes={ANSWER_COLUMN: "An answer.", LABEL_COLUMN: 1},
    summary=answer_statistics,
)


STAGES = (ANSWER_STAGE,)


def check_conftuner_recipe(recipe) -> list[str]:
    """ConfTuner trains on the model's own answers, with packing off, judged by a judge that loads."""
    errors = []
    if recipe.data.completion_template:
        errors.append(
            "method conftuner trains on the model's own answers, which its data stage writes: remove "
            f"completion_template ({recipe.data.completion_template!r})."
        )
    if recipe.data.prompt_template is None:
        errors.append(
            "method conftuner needs prompt_template: the question the model answers, e.g. '{question}'."
        )
    elif not template_columns(recipe.data.prompt_template):
        errors.append("prompt_template reads no column: every question would be the same.")
    if recipe.trainer.packing or recipe.trainer.padding_free:
        errors.append(
            "method conftuner reads the confidence at the end of each sequence: set packing and padding_free to "
            "false."
        )
    try:
        ANSWER_STAGE.reads(recipe)
    except ValueError as err:
        errors.append(f"judge: {err}")
    return errors
