"""Turn dataset rows into what TRL trainers read: a ``prompt`` (and for SFT a ``completion``).

Templates are Python format strings over the row's columns; chat recipes get conversational messages that
the tokenizer's chat template renders, raw recipes get plain strings. Column checks happen here, before any
model loads.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

from datasets import Dataset, DatasetDict

from posttrain.configs import DataArguments
from posttrain.data import require_columns


def template_columns(template: str | None) -> set[str]:
    """The column names a format string reads (``'{question}'`` -> ``{'question'}``)."""
    if not template:
        return set()
    names = set()
    for _, name, _, _ in string.Formatter().parse(template):
        if name:
            names.add(name.split(".", 1)[0].split("[", 1)[0])
    return names


def required_columns(data: DataArguments, kind: str) -> set[str]:
    """Columns the templates need; a dataset without templates must bring its own prompt (and completion)."""
    needed = template_columns(data.prompt_template) | template_columns(data.completion_template)
    if not data.prompt_template:
        needed.add("prompt")
    if kind == "sft" and not data.completion_template:
        needed.add("completion")
    return needed


def _user_turn(data: DataArguments, text: str):
    if data.prompt_format == "raw":
        return (data.system_prompt + "\n\n" + text) if data.system_prompt else text
    messages = [{"role": "system", "content": data.system_prompt}] if data.system_prompt else []
    return messages + [{"role": "user", "content": text}]


def format_split(dataset: Dataset, data: DataArguments, kind: str) -> Dataset:
    """Add ``prompt`` (and ``completion`` for SFT) columns; keep the others for rewards and judges."""

    def build(row):
        out = {}
        if data.prompt_template:
            out["prompt"] = _user_turn(data, data.prompt_template.format(**row))
        if kind == "sft" and data.completion_template:
            text = data.completion_template.format(**row)
            out["completion"] = (
                text if data.prompt_format == "raw" else [{"role": "assistant", "content": text}]
            )
        return out

    if not data.prompt_template and not (kind == "sft" and data.completion_template):
        return dataset
    formatted = dataset.map(build, desc="Formatting prompts")
    if kind == "sft":  # SFT tokenizes every remaining column's neighbours; keep only what it trains on
        formatted = formatted.select_columns(["prompt", "completion"])
    return formatted


def format_dataset(
    dataset: DatasetDict, data: DataArguments, kind: str, extra_columns: Iterable[str] = (), what: str = ""
) -> DatasetDict:
    """Check every split has the columns the templates and ``extra_columns`` (rewards) need, then format."""
    needed = required_columns(data, kind) | set(extra_columns)
    for name, split in dataset.items():
        require_columns(split, sorted(needed), what=f"{what or 'the recipe'} (split {name!r})")
    return DatasetDict({name: format_split(split, data, kind) for name, split in dataset.items()})
