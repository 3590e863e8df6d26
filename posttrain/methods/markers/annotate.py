"""Annotation for training-time markers: each training row gets its marker list (data stages on
:mod:`posttrain.stages`).

- Deterministic measures of the answer: its length in tokens, sentences and paragraphs, the length bucket, its
  natural language (py3langid, a maintained language-identification package) and the language of its code
  (the code fence's tag, else Pygments' guess).
- Source metadata: ``domain``, ``task``, ``format`` and ``source`` columns, as the ``marker_mixture`` builder
  writes them from the dataset each row comes from; the recipe's ``extra_markers`` from their own columns.
- Quality from any scorer (a reward function or a reward model, through :mod:`rewards.registry`): the score, and
  in the second stage its quartile over the whole training set.
- An LLM tagger (the recipe's model, greedy, through the shared generation service) for domain, task and format
  where the metadata lacks them.

The ``annotate`` stage writes each row's markers as a JSON object in the ``markers`` column; ``quality_buckets``
adds the quartiles. Serialisation, with the per-epoch dropout, happens in the trainer's collator.
"""

from __future__ import annotations

import bisect
import functools
import json
import logging
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pygments.lexers import guess_lexer
from pygments.util import ClassNotFound

from posttrain.formatting import row_prompt
from posttrain.generation import Sampling
from posttrain.stages import Stage, StageContext, stage_root
from rewards.contract import score_completions
from rewards.registry import load_reward_functions

logger = logging.getLogger(__name__)

MARKERS_COLUMN = "markers"
METADATA = ("domain", "task", "format", "source", "style")
LENGTH_BUCKETS = ("tiny", "short", "medium", "long")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+#.-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
# Pygments lexer names -> the names a user writes; others keep Pygments' own name.
_CODE_NAMES = {
    "python": "Python",
    "python 2.x": "Python",
    "javascript": "JavaScript",
    "c++": "C++",
    "bash": "Bash",
}


class AnnotationError(ValueError):
    """A row or a scorer the annotators cannot use; the message says what to fix."""


def count_tokens(text: str, tokenizer: Any) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def count_sentences(text: str) -> int:
    """Sentences in the prose of ``text``: runs of . ! ? before a space or the end, plus a last sentence without
    its stop. A code block ends the sentence before it and counts as none. Empty text has none."""
    count = 0
    for piece in _FENCE.split(text)[::3]:  # split() also yields each fence's tag and code: skip them
        prose = piece.strip()
        if prose:
            ends = list(_SENTENCE_END.finditer(prose))
            tail = prose[ends[-1].end() :].strip() if ends else prose
            count += len(ends) + (1 if tail else 0)
    return count


def count_paragraphs(text: str) -> int:
    """Blocks of text separated by blank lines (a code block counts as one)."""
    return len([block for block in re.split(r"\n\s*\n", _FENCE.sub("CODE", text)) if block.strip()])


def length_bucket(tokens: int, edges: Sequence[int] = (16, 64, 256)) -> str:
    """tiny below the first edge, short below the second, medium below the third, long from it."""
    return LENGTH_BUCKETS[bisect.bisect_right(list(edges), tokens)]


@functools.cache
def _language_identifier():
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError as err:
        raise AnnotationError(
            "The language marker needs the py3langid package (a dependency of posttrain: pip install -e . or "
            "bash scripts/setup.sh), or leave 'language' out of markers."
        ) from err
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def natural_language(text: str, min_letters: int = 3) -> str | None:
    """ISO 639-1 code of the prose in ``text`` (code blocks left out), or None when it has fewer than
    ``min_letters`` letters (a number, a label of symbols) to tell from."""
    prose = _FENCE.sub(" ", text)
    if sum(ch.isalpha() for ch in prose) < min_letters:
        return None
    language, _ = _language_identifier().classify(prose)
    return language


def code_language(text: str) -> str | None:
    """Language of the first code block in ``text``: its fence's tag, else Pygments' guess from the code; None
    without a fenced block."""
    match = _FENCE.search(text)
    if match is None:
        return None
    tag, code = match.group(1), match.group(2)
    if tag:
        return _CODE_NAMES.get(tag.lower(), tag)
    try:
        name = guess_lexer(code).name
    except ClassNotFound:
        return None
    return _CODE_NAMES.get(name.lower(), name)


def measure_markers(text: str, tokenizer: Any, names: Sequence[str], edges: Sequence[int]) -> dict[str, Any]:
    """The deterministic markers of one answer, those of ``names`` only; None values are left out."""
    tokens = count_tokens(text, tokenizer)
    wanted = set(names)
    values: dict[str, Any] = {}
    if "length_tokens" in wanted:
        values["length_tokens"] = tokens
    if "length_sentences" in wanted:
        values["length_sentences"] = count_sentences(text)
    if "length_paragraphs" in wanted:
        values["length_paragraphs"] = count_paragraphs(text)
    if "length_bucket" in wanted:
        values["length_bucket"] = length_bucket(tokens, edges)
    if "language" in wanted:
        values["language"] = natural_language(text)
    if "code_language" in wanted:
        values["code_language"] = code_language(text)
    return {k: v for k, v in values.items() if v is not None}


def metadata_markers(row: dict[str, Any], names: Sequence[str], extra: Sequence[str]) -> dict[str, Any]:
    """Markers the row's source gives: its metadata columns among ``names``, and the ``extra`` markers' columns
    (which must exist)."""
    values = {n: row[n] for n in METADATA if n in names and row.get(n) not in (None, "")}
    for name in extra:
        if name not in row:
            raise AnnotationError(
                f"extra_markers names {name!r}, but the rows have no {name!r} column to read it from; they have "
                f"{', '.join(sorted(row))}."
            )
        if row[name] not in (None, ""):
            values[name] = row[name]
    return values


def closest_choice(text: str, choices: Sequence[str]) -> str | None:
    """The choice a tagger's answer names: an exact match (any case), else the first choice it contains, else the
    first it starts; None when it names none."""
    answer = " ".join(text.strip().strip(".\"'").split()).lower()
    if not answer:
        return None
    lowered = [c.lower() for c in choices]
    if answer in lowered:
        return choices[lowered.index(answer)]
    for choice, low in zip(choices, lowered, strict=True):
        if low in answer:
            return choice
    for choice, low in zip(choices, lowered, strict=True):
        if low.startswith(answer) or answer.startswith(low.split()[0]):
            return choice
    return None


TAGGER_PROMPT = (
    "Here is a request and its answer.\n\nRequest: {prompt}\n\nAnswer: {answer}\n\n"
    "Which {what} does it belong to? Reply with exactly one of: {choices}."
)


def tag_rows(
    context: StageContext, prompts: Sequence[str], answers: Sequence[str], what: str, choices: Sequence[str]
) -> list[str | None]:
    """The tagger's choice for each (prompt, answer): the recipe's model answers greedily, mapped to ``choices``."""
    args = context.recipe.trainer
    asks = [
        [
            {
                "role": "user",
                "content": TAGGER_PROMPT.format(
                    prompt=p[:1500], answer=a[:1500], what=what, choices=", ".join(choices)
                ),
            }
        ]
        for p, a in zip(prompts, answers, strict=True)
    ]
    greedy = Sampling(n=1, temperature=0.0, max_new_tokens=args.tagger_max_new_tokens, seed=args.seed)
    return [closest_choice(group[0], choices) for group in context.generate(asks, greedy)]


@functools.cache
def _scorer(spec: Any, base_dir: Path):
    (fn,), _ = load_reward_functions([json.loads(spec) if spec.startswith("{") else spec], base_dir=base_dir)
    return fn


def quality_scores(
    spec: Any, base_dir: Path, prompts: list[Any], answers: list[str], rows: list[dict[str, Any]]
) -> list[float | None]:
    """The scorer's score of each (prompt, answer) pair; None where it does not apply."""
    key = spec if isinstance(spec, str) else json.dumps(spec, sort_keys=True)
    fn = _scorer(key, base_dir)
    names = [k for k in rows[0] if k not in ("prompt", "completion", MARKERS_COLUMN)]
    columns = {k: [row.get(k) for row in rows] for k in names}
    return score_completions(fn, prompts, answers, columns)


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(m.get("content", "")) for m in prompt if m.get("role") == "user")


def answer_text(recipe: Any, row: dict[str, Any]) -> str:
    """The target answer of an unformatted row, as the recipe's completion_template writes it."""
    template = recipe.data.completion_template
    if not template:
        raise AnnotationError(
            "method markers needs completion_template: the answer it annotates, e.g. '{response}'."
        )
    return template.format(**row)


def annotate_rows(rows: list[dict[str, Any]], context: StageContext) -> list[dict[str, Any] | None]:
    """Every marker of each row of a batch, as a JSON object in the ``markers`` column."""
    recipe = context.recipe
    args = recipe.trainer
    names = list(args.markers)
    answers = [answer_text(recipe, row) for row in rows]
    prompts = [row_prompt(recipe.data, row) for row in rows]
    found = [
        {
            **metadata_markers(row, names, args.extra_markers),
            **measure_markers(a, context.tokenizer, names, args.length_bucket_edges),
        }
        for row, a in zip(rows, answers, strict=True)
    ]
    if args.tagger:
        texts = [_prompt_text(p) for p in prompts]
        for name, what, choices in (
            ("domain", "domain", args.tagger_domains),
            ("task", "task", args.tagger_tasks),
            ("format", "answer format", args.tagger_formats),
        ):
            todo = [i for i, markers in enumerate(found) if name in names and name not in markers]
            if todo:
                tags = tag_rows(context, [texts[i] for i in todo], [answers[i] for i in todo], what, choices)
                for i, tag in zip(todo, tags, strict=True):
                    if tag is not None:
                        found[i][name] = tag
    if args.quality_scorer and {"quality", "quality_bucket"} & set(names):
        scores = quality_scores(args.quality_scorer, recipe.base_dir, prompts, answers, rows)
        for markers, score in zip(found, scores, strict=True):
            if score is not None:
                markers["quality"] = round(float(score), 4)
    return [
        {**row, MARKERS_COLUMN: json.dumps(markers, ensure_ascii=False)}
        for row, markers in zip(rows, found, strict=True)
    ]


def quartile_edges(scores: Sequence[float]) -> list[float]:
    """The three cut points (25th, 50th, 75th percentile) of ``scores``."""
    if len(scores) < 2:
        return [scores[0]] * 3 if scores else []
    return list(statistics.quantiles(scores, n=4, method="inclusive"))


def quality_bucket(score: float, edges: Sequence[float]) -> int:
    """Quartile 1 (lowest) to 4 (highest); a score on a cut point goes to the lower quartile."""
    return 1 + bisect.bisect_left(list(edges), score)


@functools.cache
def _edges_of(path: str) -> tuple[float, ...]:
    scores = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            quality = json.loads(json.loads(line)[MARKERS_COLUMN]).get("quality")
            if quality is not None:
                scores.append(float(quality))
    return tuple(quartile_edges(scores))


def bucket_quality(rows: list[dict[str, Any]], context: StageContext) -> list[dict[str, Any] | None]:
    """``quality_bucket``: each row's quality quartile among all the annotated training rows."""
    args = context.recipe.trainer
    if not args.quality_scorer or "quality_bucket" not in args.markers:
        return rows
    edges = _edges_of(str(stage_root(context.recipe) / ANNOTATE_STAGE.name / "train.jsonl"))
    out = []
    for row in rows:
        markers = json.loads(row[MARKERS_COLUMN])
        if "quality" in markers:
            markers["quality_bucket"] = quality_bucket(markers["quality"], edges)
            if "quality" not in args.markers:
                del markers["quality"]
        out.append({**row, MARKERS_COLUMN: json.dumps(markers, ensure_ascii=False)})
    return out


def marker_statistics(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How often each marker has a value, and the spread of the categorical ones."""
    present: Counter[str] = Counter()
    values: dict[str, Counter[str]] = {}
    for row in rows:
        markers = json.loads(row[MARKERS_COLUMN])
        present.update(list(markers))
        for name in (
            "domain",
            "task",
            "format",
            "language",
            "code_language",
            "length_bucket",
            "quality_bucket",
        ):
            if name in markers:
                values.setdefault(name, Counter())[str(markers[name])] += 1
    return {
        "rows": len(rows),
        "present": dict(present),
        "values": {k: dict(v.most_common(12)) for k, v in values.items()},
    }


def annotation_reads(recipe: Any) -> set[str]:
    """Columns the annotation reads beyond the templates': the extra markers' own columns."""
    return set(recipe.trainer.extra_markers)


def annotation_settings(recipe: Any) -> dict[str, Any]:
    """The fields that change what the annotation writes: a stage folder made with others is not reused."""
    args = recipe.trainer
    return {
        name: getattr(args, name)
        for name in (
            "markers",
            "extra_markers",
            "length_bucket_edges",
            "quality_scorer",
            "tagger",
            "tagger_domains",
            "tagger_tasks",
            "tagger_formats",
            "tagger_max_new_tokens",
        )
    }


ANNOTATE_STAGE = Stage(
    name="annotate",
    run=annotate_rows,
    batch_size=64,
    description="Markers of each training row: measures, source metadata, quality score and (optionally) tags.",
    reads=annotation_reads,
    writes={MARKERS_COLUMN: json.dumps({"domain": "Math", "length_tokens": 12})},
    settings=annotation_settings,
)
QUALITY_STAGE = Stage(
    name="quality_buckets",
    run=bucket_quality,
    batch_size=256,
    description="The quality quartile of each row over the whole training set.",
    summary=marker_statistics,
    settings=annotation_settings,
)
STAGES = (ANNOTATE_STAGE, QUALITY_STAGE)


def check_markers_recipe(recipe) -> list[str]:
    """Markers annotates the recipe's target answers: it needs both templates, and a quality scorer that loads."""
    errors = []
    data = recipe.data
    if not data.completion_template:
        errors.append("method markers needs completion_template: the answer it annotates, e.g. '{response}'.")
    if not data.prompt_template:
        errors.append("method markers needs prompt_template: the request, e.g. '{instruction}'.")
    args = recipe.trainer
    if args.quality_scorer:
        spec = args.quality_scorer
        try:
            _scorer(spec if isinstance(spec, str) else json.dumps(spec, sort_keys=True), recipe.base_dir)
        except ValueError as err:
            errors.append(f"quality_scorer: {err}")
    elif {"quality", "quality_bucket"} & set(args.markers) and "markers" in recipe.explicit:
        errors.append(
            "markers names quality markers but quality_scorer is not set: name a scorer or drop them."
        )
    return errors
