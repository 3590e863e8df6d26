"""Reading configuration: YAML files whose keys fill dataclasses, overridable by ``--field value`` flags.

Shared by recipes (``posttrain train``/``validate``/``stage``) and evaluations (``posttrain eval``): unknown keys
get the nearest valid key, or the data builder or method they belong to, and every error is a
:class:`RecipeError` that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from posttrain.configs import DataArguments
from posttrain.data import get_data_builder, registered_data_builders

# Optional nested sections; the canonical form is flat with banner comments, both parse the same.
SECTIONS = ("recipe", "model", "data", "trainer")


class RecipeError(ValueError):
    """A recipe that cannot run; the message says what to change."""


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise RecipeError(f"Recipe file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RecipeError(f"{path} is not valid YAML: {err}") from err
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path} must hold a YAML mapping of field: value, not a {type(raw).__name__}.")
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        items = value.items() if key in SECTIONS and isinstance(value, dict) else [(key, value)]
        for sub_key, sub_value in items:
            if sub_key in flat:
                raise RecipeError(f"{path}: key {sub_key!r} is set twice.")
            flat[sub_key] = sub_value
    return flat


def cli_keys(args: list[str]) -> list[str]:
    return [a[2:].split("=", 1)[0].replace("-", "_") for a in args if a.startswith("--")]


def builder_hints() -> dict[str, str]:
    """Keys that belong to a registered data builder, and what to set to use them."""
    hints: dict[str, str] = {}
    for name, builder in registered_data_builders().items():
        for f in dataclasses.fields(builder.args_class):
            hints.setdefault(f.name, f"it belongs to data_builder {name!r}: add 'data_builder: {name}'")
    return hints


def _unknown_key_errors(keys: list[str], known: set[str], where: str, owners: Mapping[str, str]) -> list[str]:
    errors = []
    for key in keys:
        if key in known:
            continue
        if key in owners:
            errors.append(f"key {key!r} in {where} is not used here: {owners[key]}")
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        errors.append(f"unknown key {key!r} in {where}{hint}")
    return errors


def peek(config: dict[str, Any], args: list[str], key: str, default: Any = None) -> Any:
    """A key's value before parsing (it decides which sections parse): the command line wins over the YAML."""
    for i, arg in enumerate(args):
        if arg == f"--{key}" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(f"--{key}="):
            return arg.split("=", 1)[1]
    return config.get(key, default)


def data_sections(
    config: dict[str, Any], overrides: list[str], default_builder: str | None
) -> tuple[type, ...]:
    """DataArguments, plus the fields of the data builder the YAML, the command line or the method names.

    The chosen builder's name is written back into ``config`` so that ``data_builder`` parses to it."""
    name = peek(config, overrides, "data_builder", default_builder)
    if not name:
        return (DataArguments,)
    config.setdefault("data_builder", name)
    return (DataArguments, get_data_builder(str(name)).args_class)


def parse_dataclasses(
    config: dict[str, Any],
    overrides: list[str],
    types: tuple[type, ...],
    where: str,
    hints: Mapping[str, str] | None = None,
) -> list:
    """Fill ``types`` from YAML values overridden by ``--field value`` flags.

    An unknown key gets the hint ``hints`` holds for it (by default: the data builder it belongs to), else the
    nearest valid key."""
    known: set[str] = set()
    for cls in types:
        names = {f.name for f in dataclasses.fields(cls)}
        clash = known & names
        if clash:  # a programming error in a config class, not a user error
            raise TypeError(f"{cls.__name__} redefines field(s) {sorted(clash)} of another section.")
        known |= names

    owners = builder_hints() if hints is None else hints
    errors = _unknown_key_errors(list(config), known, where, owners)
    errors += _unknown_key_errors(cli_keys(overrides), known, "the command-line overrides", owners)
    if errors:
        raise RecipeError(f"{where} has unknown keys:\n  " + "\n  ".join(errors))

    parser = HfArgumentParser(types)
    for action in parser._actions:
        if action.dest in config:
            action.default = config[action.dest]
            action.required = False
    try:
        *parsed, remaining = parser.parse_args_into_dataclasses(args=overrides, return_remaining_strings=True)
    except SystemExit as err:  # argparse exits on a bad value; turn it into an error we can report
        raise RecipeError(f"{where}: invalid command-line override(s) {overrides}") from err
    except (ValueError, TypeError) as err:
        raise RecipeError(f"{where}: {err}") from err
    if remaining:
        raise RecipeError(f"Unexpected command-line arguments: {remaining}")
    return parsed
