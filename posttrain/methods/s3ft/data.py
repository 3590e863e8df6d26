"""S3FT's data stage: the model answers each training prompt itself (greedy, through the shared generation
service), a judge checks the answer, the model answers the rejected prompts again with the gold shown as a
reference, the judge checks those, and a rule picks each row's target.

Each output row is the source row plus ``completion`` (the chosen target, as an assistant message),
``target_source`` (``own``, ``paraphrase`` or ``gold``: the rule that picked it), and what led there:
``own_answer``/``own_correct`` and ``paraphrase``/``paraphrase_correct`` (None where not generated). The stage
runs on the shared runner (:mod:`posttrain.stages`): sharded by rank, resumable, and summarised (the composition of
the built set) in ``summary.json``. The baselines use the same stage: ``target_rule: sft`` generates nothing and
takes the gold; ``sdft`` takes the model's answer written with the reference, whatever the judge says.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any

from posttrain.formatting import row_prompt
from posttrain.generation import Sampling
from posttrain.stages import Stage, StageContext
from posttrain.templates import template_columns
from rewards.judges import Judge, load_judge

TARGET_COLUMN = "completion"
SOURCE_COLUMN = "target_source"
SOURCES = ("own", "paraphrase", "gold")


@functools.cache
def _judge(spec: str, kwargs_json: str, base_dir: Path) -> Judge:
    kwargs = json.loads(kwargs_json)
    return load_judge({"name": spec, "kwargs": kwargs} if kwargs else spec, base_dir=base_dir)


def recipe_judge(recipe: Any) -> Judge:
    args = recipe.trainer
    return _judge(args.judge, json.dumps(args.judge_kwargs or {}, sort_keys=True), recipe.base_dir)


def choose_target(
    rule: str,
    gold: str,
    own: str | None = None,
    own_accepted: bool | None = None,
    paraphrase: str | None = None,
    paraphrase_accepted: bool | None = None,
) -> tuple[str, str]:
    """The target of one row and the rule that picked it (see :data:`SOURCES`).

    ``s3ft``: the own answer if accepted, else the paraphrase if accepted, else the gold; an empty answer is never
    a target. ``sft``: the gold. ``sdft``: the paraphrase (the gold if the model wrote nothing)."""
    if rule == "sft":
        return gold, "gold"
    if rule == "sdft":
        return (paraphrase, "paraphrase") if paraphrase else (gold, "gold")
    if own_accepted and own:
        return own, "own"
    if paraphrase_accepted and paraphrase:
        return paraphrase, "paraphrase"
    return gold, "gold"


def reference_prompt(template: str, prompt: Any, gold: str) -> Any:
    """``prompt`` (chat messages or raw text) with its request rewritten by ``template`` to show the gold."""
    if isinstance(prompt, str):
        return template.format(prompt=prompt, reference=gold)
    request = prompt[-1]
    return [*prompt[:-1], {**request, "content": template.format(prompt=request["content"], reference=gold)}]


def _generate(context: StageContext, prompts: list[Any]) -> list[str]:
    args = context.recipe.trainer
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=args.answer_max_new_tokens, seed=args.seed)
    expected = context.recipe.data.max_train_samples
    return [samples[0].strip() for samples in context.generate(prompts, greedy, expected_rows=expected)]


def build_targets(rows: list[dict[str, Any]], context: StageContext) -> list[dict[str, Any] | None]:
    """Predict, judge, answer the rejected ones again with the reference, judge again, choose each target."""
    recipe = context.recipe
    args = recipe.trainer
    rule = args.target_rule
    prompts = [row_prompt(recipe.data, row) for row in rows]
    golds = [args.gold_template.format(**row) for row in rows]
    own: list[str | None] = [None] * len(rows)
    own_ok: list[bool | None] = [None] * len(rows)
    para: list[str | None] = [None] * len(rows)
    para_ok: list[bool | None] = [None] * len(rows)
    judge = recipe_judge(recipe)
    if rule == "s3ft":
        own = _generate(context, prompts)
        own_ok = judge(prompts, own, rows)
    again = [i for i in range(len(rows)) if rule == "sdft" or (rule == "s3ft" and not own_ok[i])]
    if again:
        asked = [reference_prompt(args.reference_prompt, prompts[i], golds[i]) for i in again]
        answers = _generate(context, asked)
        # Judged as answers to the task prompt: the reference is not part of what the target answers.
        verdicts = judge([prompts[i] for i in again], answers, [rows[i] for i in again])
        for i, answer, verdict in zip(again, answers, verdicts, strict=True):
            para[i], para_ok[i] = answer, verdict
    out = []
    for i, row in enumerate(rows):
        target, source = choose_target(rule, golds[i], own[i], own_ok[i], para[i], para_ok[i])
        out.append(
            {
                **row,
                TARGET_COLUMN: [{"role": "assistant", "content": target}],
                SOURCE_COLUMN: source,
                "own_answer": own[i],
                "own_correct": None if own_ok[i] is None else int(own_ok[i]),
                "paraphrase": para[i],
                "paraphrase_correct": None if para_ok[i] is None else int(para_ok[i]),
            }
        )
    return out


def composition(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the built set holds: rows, the count and share of each target source, the model's accuracy on its own
    answers and the judge's acceptance of the answers written with the reference (over the rows that have them)."""
    counts = Counter(row[SOURCE_COLUMN] for row in rows)
    judged_own = [row["own_correct"] for row in rows if row.get("own_correct") is not None]
    judged_para = [row["paraphrase_correct"] for row in rows if row.get("paraphrase_correct") is not None]
    return {
        "rows": len(rows),
        "sources": {source: counts.get(source, 0) for source in SOURCES},
        "shares": {source: counts.get(source, 0) / len(rows) if rows else None for source in SOURCES},
        "own_accuracy": sum(judged_own) / len(judged_own) if judged_own else None,
        "paraphrase_accepted": sum(judged_para) / len(judged_para) if judged_para else None,
        "paraphrases": len(judged_para),
    }


def stage_reads(recipe: Any) -> set[str]:
    """The source columns the stage reads: the judge's and the gold template's."""
    return recipe_judge(recipe).columns | template_columns(recipe.trainer.gold_template)


def stage_settings(recipe: Any) -> dict[str, Any]:
    """The fields that decide what the stage writes (they join its fingerprint)."""
    args = recipe.trainer
    names = (
        "target_rule",
        "gold_template",
        "judge",
        "judge_kwargs",
        "answer_max_new_tokens",
        "reference_prompt",
    )
    return {name: getattr(args, name) for name in names}


TARGET_STAGE = Stage(
    name="targets",
    run=build_targets,
    uses_model=True,
    batch_size=64,
    description="The model answers each prompt (greedy); the judge checks it; rejected prompts are answered again "
    "with the gold as a reference and judged; a rule picks own / paraphrase / gold as the target.",
    reads=stage_reads,
    writes={
        TARGET_COLUMN: [{"role": "assistant", "content": "A target."}],
        SOURCE_COLUMN: "gold",
        "own_answer": "An answer.",
        "own_correct": 0,
        "paraphrase": "An answer.",
        "paraphrase_correct": 0,
    },
    summary=composition,
    settings=stage_settings,
)

STAGES = (TARGET_STAGE,)


def check_s3ft_recipe(recipe) -> list[str]:
    """S3FT asks the model in chat form, takes its gold from gold_template, and judges with a judge that loads."""
    errors = []
    data, args = recipe.data, recipe.trainer
    if data.completion_template:
        errors.append(
            "method s3ft writes each row's target in its data stage: move completion_template "
            f"({data.completion_template!r}) to gold_template."
        )
    if not data.prompt_template:
        errors.append("method s3ft needs prompt_template: the request the model answers, e.g. '{question}'.")
    if data.prompt_format != "chat":
        errors.append("method s3ft asks the model in chat form: set prompt_format to chat.")
    if not args.gold_template:
        errors.append(
            "method s3ft needs gold_template: the gold response over the row's columns, e.g. '{answer}'."
        )
    try:
        recipe_judge(recipe)
    except (ValueError, TypeError) as err:
        errors.append(f"judge: {err}")
    return errors
