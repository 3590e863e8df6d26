"""The ``marker_mixture`` data builder: a mixture of the registered offline sets, each row with the task, domain,
format and source its dataset gives (the source metadata training-time markers read).

Every source becomes ``instruction`` (the user turn), ``response`` (the target answer) and ``gold`` (the short
answer task accuracy is scored on: the number, the label, the entity; for code, the entry point's name). The
recipe's dataset (``dataset_name``) is one of the sources; ``mixture_sources`` names the others. Each source keeps
its own train/test split, so the mixture's test split never shares a row (or, for templated sets, a template) with
its training split. ``rows_per_source`` caps each source's training rows and ``test_rows_per_source`` its test
rows, chosen by a seeded shuffle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, DatasetDict, concatenate_datasets

from posttrain.data import DataError, load_registered, require_columns

logger = logging.getLogger(__name__)

MIXTURE_COLUMNS = ("instruction", "response", "gold", "source", "task", "domain", "format")


@dataclass(frozen=True)
class MixtureSource:
    """How one registered dataset's rows become mixture rows."""

    columns: tuple[str, ...]
    convert: Callable[[dict[str, Any]], dict[str, str]]
    task: str
    domain: str
    format: str


def _math(row: dict[str, Any]) -> dict[str, str]:
    return {"instruction": row["question"], "response": row["solution"], "gold": str(row["answer"])}


def _code(row: dict[str, Any]) -> dict[str, str]:
    return {
        "instruction": "Complete this Python function:\n```python\n" + row["prompt"] + "```",
        "response": "```python\n" + row["canonical_solution"].rstrip() + "\n```",
        "gold": row["entry_point"],
    }


def _qa(row: dict[str, Any]) -> dict[str, str]:
    return {
        "instruction": "Complete the statement with a short answer: " + row["question"],
        "response": row["answer"],
        "gold": row["answer"],
    }


INTENTS = "add_to_playlist, book_restaurant, get_weather, play_music, rate_book, search_creative_work, search_screening_event"


def _intent(row: dict[str, Any]) -> dict[str, str]:
    return {
        "instruction": f"Which intent does this request express? Choose one of: {INTENTS}.\nRequest: {row['text']}",
        "response": row["label"],
        "gold": row["label"],
    }


def _review(row: dict[str, Any]) -> dict[str, str]:
    text = " ".join(str(row["text"]).replace("<br />", " ").split())
    return {
        "instruction": f"Is this food review 'great' (5 stars) or 'other'? Answer with one word.\nReview: {text}",
        "response": row["label"],
        "gold": row["label"],
    }


SOURCES: dict[str, MixtureSource] = {
    "gsm_symbolic": MixtureSource(
        ("question", "solution", "answer"), _math, "Math reasoning", "Math", "Worked solution"
    ),
    "humaneval": MixtureSource(
        ("prompt", "canonical_solution", "entry_point"), _code, "Code generation", "Code", "Code block"
    ),
    "qa_wikidata": MixtureSource(
        ("question", "answer"), _qa, "Question answering", "General knowledge", "Short answer"
    ),
    "intent_recognition": MixtureSource(
        ("text", "label"), _intent, "Classification", "Virtual assistant", "Label"
    ),
    "amazon_reviews": MixtureSource(
        ("text", "label", "product"), _review, "Classification", "Product reviews", "Label"
    ),
}


@dataclass
class MixtureArguments:
    """Fields of the ``marker_mixture`` data builder."""

    mixture_sources: list[str] = field(
        default_factory=lambda: ["humaneval", "qa_wikidata", "intent_recognition"],
        metadata={
            "help": "Registered datasets mixed in beside dataset_name (which is one of the sources), each from: "
            + ", ".join(SOURCES)
            + "."
        },
    )
    rows_per_source: int | None = field(
        default=None,
        metadata={"help": "Training rows kept from each source (seeded shuffle); None keeps all."},
    )
    test_rows_per_source: int | None = field(
        default=None, metadata={"help": "Test rows kept from each source (seeded shuffle); None keeps all."}
    )
    mixture_seed: int = field(default=0, metadata={"help": "Seed of the per-source row choice."})

    def __post_init__(self) -> None:
        unknown = [s for s in self.mixture_sources if s not in SOURCES]
        if unknown:
            raise ValueError(
                f"mixture_sources names unknown source(s) {unknown}; known: {', '.join(SOURCES)}."
            )
        for name in ("rows_per_source", "test_rows_per_source"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or null for all rows), got {value}.")


def mixture_rows(name: str, split: Dataset, cap: int | None, seed: int) -> Dataset:
    """One source's split as mixture rows, at most ``cap`` of them."""
    source = SOURCES[name]
    require_columns(split, list(source.columns), what=f"the marker_mixture source {name!r}")
    if cap is not None and cap < len(split):
        split = split.shuffle(seed=seed).select(range(cap))

    def convert(row: dict[str, Any]) -> dict[str, str]:
        return {
            **source.convert(row),
            "source": name,
            "task": source.task,
            "domain": source.domain,
            "format": source.format,
        }

    return split.map(convert, remove_columns=split.column_names, desc=f"Mixture rows of {name}")


def build_mixture(splits: DatasetDict, args: MixtureArguments, *, train_split: str = "train") -> DatasetDict:
    """The recipe's dataset (``splits``, which must be a registered source) mixed with ``mixture_sources``."""
    # The recipe's dataset is told apart by its columns: builders see splits, not names.
    first = next(iter(splits.values()))
    primary = [n for n, s in SOURCES.items() if set(s.columns) <= set(first.column_names)]
    if not primary:
        raise DataError(
            "data_builder marker_mixture reads registered sources; dataset_name must be one of "
            f"{', '.join(SOURCES)} (its columns {first.column_names} match none)."
        )
    # The most specific match: amazon_reviews' rows also have intent_recognition's columns.
    loaded = {max(primary, key=lambda n: len(SOURCES[n].columns)): splits}
    for name in args.mixture_sources:
        if name not in loaded:
            loaded[name] = load_registered(name)
    out = {}
    for split_name in (train_split, "test"):
        cap = args.rows_per_source if split_name == train_split else args.test_rows_per_source
        parts = [
            mixture_rows(name, data[split_name], cap, args.mixture_seed)
            for name, data in loaded.items()
            if split_name in data
        ]
        if parts:
            out[split_name] = concatenate_datasets(parts).shuffle(seed=args.mixture_seed)
    logger.info(
        "marker_mixture: %s; %s",
        ", ".join(loaded),
        ", ".join(f"{k} {len(v)} rows" for k, v in out.items()),
    )
    return DatasetDict(out)
