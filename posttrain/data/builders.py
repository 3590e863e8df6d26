"""Data builders: named rewrites of a dataset's splits that run after loading and before prompt formatting.

A builder brings its own recipe fields (a dataclass that joins the recipe's sections when the builder is
named) and a function ``build(splits, fields, *, train_split) -> splits``. Methods register theirs (CLS-RL registers
``classification``); a recipe or an evaluation names one with ``data_builder``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from datasets import DatasetDict

from posttrain.data.user import DataError

BuildFunction = Callable[..., DatasetDict]  # build(splits, fields, *, train_split) -> splits


@dataclass(frozen=True)
class DataBuilder:
    """One data builder: its name, its fields' dataclass and the function that rewrites the splits."""

    name: str
    args_class: type
    build: BuildFunction
    description: str


_BUILDERS: dict[str, DataBuilder] = {}


def register_data_builder(builder: DataBuilder, *, overwrite: bool = False) -> DataBuilder:
    """Make ``builder`` nameable as ``data_builder``; a second builder of the same name needs ``overwrite``."""
    known = _BUILDERS.get(builder.name)
    if known is not None and known != builder and not overwrite:
        raise ValueError(
            f"A data builder named {builder.name!r} is already registered ({known.description})."
        )
    _BUILDERS[builder.name] = builder
    return builder


def registered_data_builders() -> dict[str, DataBuilder]:
    return dict(_BUILDERS)


def get_data_builder(name: str) -> DataBuilder:
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, _BUILDERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        known = ", ".join(sorted(_BUILDERS)) or "none"
        raise DataError(
            f"Unknown data_builder {name!r}.{hint} Known data builders: {known}.",
            hint="`posttrain builders` lists the data builders and what each does.",
        )
    return _BUILDERS[name]


@dataclass
class RowFilterArguments:
    """Keep the rows of every split whose column matches a pattern (the ``row_filter`` data builder)."""

    filter_column: str = field(
        default="", metadata={"help": "Column whose text decides whether a row is kept (e.g. 'question')."}
    )
    filter_pattern: str = field(
        default="",
        metadata={
            "help": "Python regular expression searched in that column; rows where it is found are kept in every "
            "split, the others dropped. E.g. '^The (official )?language of' keeps qa_wikidata's language questions."
        },
    )

    def __post_init__(self) -> None:
        try:
            re.compile(self.filter_pattern)
        except re.error as err:
            raise ValueError(
                f"filter_pattern {self.filter_pattern!r} is not a regular expression: {err}."
            ) from err


def filter_rows(splits: DatasetDict, args: RowFilterArguments, *, train_split: str = "train") -> DatasetDict:
    """The rows of each split whose ``filter_column`` matches ``filter_pattern``; a split left empty is an error."""
    if not args.filter_column or not args.filter_pattern:
        raise DataError("data_builder row_filter needs filter_column and filter_pattern.")
    pattern = re.compile(args.filter_pattern)
    kept = {}
    for name, split in splits.items():
        if args.filter_column not in split.column_names:
            raise DataError(
                f"filter_column {args.filter_column!r} is not a column of split {name!r}; it has "
                f"{', '.join(split.column_names)}."
            )
        kept[name] = split.filter(
            lambda row: pattern.search(str(row[args.filter_column])) is not None, desc=f"Filtering {name}"
        )
        if len(kept[name]) == 0:
            raise DataError(
                f"No row of split {name!r} has {args.filter_column} matching {args.filter_pattern!r}."
            )
    return DatasetDict(kept)


ROW_FILTER = register_data_builder(
    DataBuilder(
        name="row_filter",
        args_class=RowFilterArguments,
        build=filter_rows,
        description="Keep the rows whose column matches a regular expression (a sub-task of a dataset).",
    )
)
