"""Reading configuration: YAML files whose keys fill dataclasses, overridable by ``--field value`` flags.

Shared by recipes (``posttrain train``/``validate``/``stage``) and evaluations (``posttrain eval``): unknown keys
get what replaced them (keys from open-r1 and older TRL, see :mod:`posttrain.renames`), the data builder or
method they belong to, or the nearest valid key; values are checked against their field's type, and every error
is a :class:`RecipeError` that names the file, the line and the key.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from posttrain.configs import DataArguments
from posttrain.data import get_data_builder, registered_data_builders
from posttrain.errors import UserError
from posttrain.renames import key_rename

# Optional nested sections; the canonical form is flat with banner comments, both parse the same.
SECTIONS = ("recipe", "model", "data", "trainer")


class RecipeError(UserError, ValueError):
    """A recipe (or an evaluation) that cannot run; the message says what to change."""


MIGRATION_HINT = (
    'the README\'s "Coming from open-r1 / TRL" section maps the keys and rewards of open-r1 and older TRL '
    "recipes."
)


class BadKeysError(RecipeError):
    """Every unknown key and wrong value of a configuration, in one report.

    ``problems`` holds one line per problem and ``keys`` the keys at fault, so that a caller can check the rest of
    the configuration without them and report everything at once.
    """

    def __init__(self, where: str, problems: list[str], keys: set[str], title: str, hint: str | None = None):
        super().__init__(f"{where} has {title}:\n  " + "\n  ".join(problems), hint=hint)
        self.problems, self.keys = problems, keys


class YamlConfig(dict):
    """A YAML file's flattened keys, with the line each key is on (``lines``) for error messages."""

    def __init__(self, *args: Any, lines: Mapping[str, int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines: dict[str, int] = dict(lines or {})


def _yaml_syntax_error(path: Path, text: str, err: yaml.YAMLError) -> RecipeError:
    """The file, line and column of a YAML syntax error, the problem, and the line as written."""
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return RecipeError(f"{path} is not valid YAML: {err}")
    problem = getattr(err, "problem", None) or str(err)
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None and context_mark.line != mark.line:
        problem += f" ({context} that starts on line {context_mark.line + 1})"
    lines = text.splitlines()
    source = lines[mark.line] if mark.line < len(lines) else ""
    shown = f"\n    {source}\n    {' ' * mark.column}^" if source.strip() else ""
    return RecipeError(
        f"{path} is not valid YAML: line {mark.line + 1}, column {mark.column + 1}: {problem}{shown}"
    )


def _key_lines(text: str) -> dict[str, int]:
    """The line of each top-level key, and of each key inside a nested section."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    lines: dict[str, int] = {}
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        lines.setdefault(str(key.value), key.start_mark.line + 1)
        if key.value in SECTIONS and isinstance(value, yaml.MappingNode):
            for sub_key, _ in value.value:
                lines.setdefault(str(sub_key.value), sub_key.start_mark.line + 1)
    return lines


def read_yaml(path: Path) -> YamlConfig:
    if not path.exists():
        raise RecipeError(f"Recipe file not found: {path}")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise _yaml_syntax_error(path, text, err) from err
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path} must hold a YAML mapping of field: value, not a {type(raw).__name__}.")
    flat = YamlConfig(lines=_key_lines(text))
    for key, value in raw.items():
        items = value.items() if key in SECTIONS and isinstance(value, dict) else [(key, value)]
        for sub_key, sub_value in items:
            if sub_key in flat:
                raise RecipeError(f"{path}: key {sub_key!r} is set twice.")
            flat[sub_key] = sub_value
    return flat


def _at(config: Mapping[str, Any], key: str, where: str) -> str:
    """Where a key is set: ``recipe.yaml (line 7)`` when its line is known."""
    line = getattr(config, "lines", {}).get(key)
    return f"{where} (line {line})" if line else where


def cli_keys(args: list[str]) -> list[str]:
    return [a[2:].split("=", 1)[0].replace("-", "_") for a in args if a.startswith("--")]


def builder_hints() -> dict[str, str]:
    """Keys that belong to a registered data builder, and what to set to use them."""
    hints: dict[str, str] = {}
    for name, builder in registered_data_builders().items():
        for f in dataclasses.fields(builder.args_class):
            hints.setdefault(f.name, f"it belongs to data_builder {name!r}: add 'data_builder: {name}'")
    return hints


def _key_errors(
    keys: list[str],
    known: set[str],
    where: str,
    owners: Mapping[str, str],
    config: Mapping[str, Any] | None = None,
) -> list[tuple[str, str, bool]]:
    """(key, problem, whether the renames table explained it) for each key that cannot be used as written.

    A key that posttrain sets from a key of its own is refused although it parses. An unknown key gets, in this
    order: the data builder or method it belongs to, what replaced it (open-r1 and older TRL keys), or the
    nearest valid key by spelling."""
    config = config or {}
    errors = []
    for key in keys:
        rename = key_rename(key)
        at = _at(config, key, where)
        if key in known:
            if rename is not None and rename.set_by_posttrain:
                problem = (
                    f"key {key!r} in {at} is set by posttrain: write {rename.replacement()} instead of {key}"
                )
                errors.append((key, f"{problem} ({rename.why})", True))
            continue
        if key in owners:
            errors.append((key, f"key {key!r} in {at} is not used here: {owners[key]}", False))
        elif rename is not None:
            errors.append((key, f"unknown key {key!r} in {at}: {rename.hint(config.get(key))}", True))
        else:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            errors.append((key, f"unknown key {key!r} in {at}{hint}", False))
    return errors


def drop_overrides(args: list[str], keys: set[str]) -> list[str]:
    """The command-line overrides without the flags of ``keys`` (and the value after each)."""
    kept: list[str] = []
    skip_value = False
    for arg in args:
        if skip_value and not arg.startswith("--"):
            skip_value = False
            continue
        skip_value = False
        if arg.startswith("--") and cli_keys([arg])[0] in keys:
            skip_value = "=" not in arg
            continue
        kept.append(arg)
    return kept


# How a field's type reads in an error message.
_TYPE_NAMES = {int: "a whole number", float: "a number", string_to_bool: "true or false"}


def _value_error(action: Any, value: Any) -> str | None:
    """Why ``value`` from a YAML file does not fit the field behind ``action`` (None when it fits).

    A string goes through the field's own conversion, as a command-line value would; numbers are checked for
    what the conversion never sees (a bool or a fraction where a whole number belongs). Lists and mappings
    are left to the field: several TRL fields take a mapping where their declared type is a string.
    """
    convert = action.type
    if convert is None or value is None:
        return None
    if action.nargs in ("+", "*"):  # a list field: its type is the type of each item
        for item in value if isinstance(value, list) else [value]:
            problem = _value_error(argparse.Namespace(type=convert, nargs=None, choices=action.choices), item)
            if problem is not None:
                return f"item {problem}"
        return None
    wanted = _TYPE_NAMES.get(convert)
    if isinstance(value, str):
        if convert is str:
            return None
        try:
            value = convert(value)
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            return f"{value!r} is not {wanted or 'a valid value'}"
    elif convert in (int, float) and isinstance(value, bool):
        return f"{value!r} is not {wanted}"
    elif convert is int and isinstance(value, float) and not value.is_integer():
        return f"{value!r} is not {wanted}"
    elif convert in (int, float) and isinstance(value, (list, dict)):
        return f"a {type(value).__name__} is not {wanted}"
    if action.choices is not None and not isinstance(value, (list, dict)) and value not in action.choices:
        choices = [str(c) for c in action.choices]
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{value!r} is not one of {', '.join(choices)}{hint}"
    return None


def _value_errors(parser: HfArgumentParser, config: Mapping[str, Any], where: str) -> list[tuple[str, str]]:
    """(key, problem) for each value that does not fit its field."""
    actions = {action.dest: action for action in parser._actions}
    errors = []
    for key, value in config.items():
        problem = _value_error(actions[key], value) if key in actions else None
        if problem is not None:
            errors.append((key, f"{key} in {_at(config, key, where)}: {problem}"))
    return errors


def _raise_override_error(message: str) -> None:
    """argparse's error handler for the command-line overrides: one error, not a usage screen and an exit."""
    raise RecipeError(f"invalid command-line override: {message}")


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
    errors = _key_errors(list(config), known, where, owners, config)
    errors += _key_errors(cli_keys(overrides), known, "the command-line overrides", owners)
    parser = HfArgumentParser(types)
    wrong = _value_errors(parser, config, where)
    if errors or wrong:  # every key error and every value error of the file, in one report
        # A key posttrain sets itself is known, not unknown: name the kind for what the list holds.
        keys = "keys to change" if any(key in known for key, _, _ in errors) else "unknown keys"
        title = " and ".join(t for t, found in ((keys, errors), ("wrong values", wrong)) if found)
        raise BadKeysError(
            where,
            [problem for _, problem, _ in errors] + [problem for _, problem in wrong],
            {key for key, _, _ in errors} | {key for key, _ in wrong},
            title,
            hint=MIGRATION_HINT if any(renamed for _, _, renamed in errors) else None,
        )

    for action in parser._actions:
        if action.dest in config:
            action.default = config[action.dest]
            action.required = False
    parser.error = _raise_override_error  # a bad --field value is one error naming the flag
    try:
        *parsed, remaining = parser.parse_args_into_dataclasses(args=overrides, return_remaining_strings=True)
    except RecipeError as err:
        raise RecipeError(f"{where}: {err}") from err
    except (ValueError, TypeError) as err:
        raise RecipeError(f"{where}: {err}") from err
    if remaining:
        raise RecipeError(f"Unexpected command-line arguments: {remaining}")
    return parsed
