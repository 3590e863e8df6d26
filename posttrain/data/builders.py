"""Data builders: named rewrites of a dataset's splits that run after loading and before prompt formatting.

A builder brings its own recipe fields (a dataclass that joins the recipe's sections when the builder is
named) and a function ``build(splits, fields, *, train_split) -> splits``. Methods register theirs (CLS-RL registers
``classification``); a recipe or an evaluation names one with ``data_builder``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

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
