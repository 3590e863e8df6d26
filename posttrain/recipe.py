"""Parse and validate a recipe: one YAML file, overridable field by field on the command line.

Everything here runs before any model or dataset loads, so a recipe that cannot run fails in seconds with
an error that names the key to fix (and the nearest valid key, for typos).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import get_token
from transformers.integrations import get_available_reporting_integrations

from posttrain.configs import DataArguments, ModelConfig, RecipeArguments
from posttrain.data import DataError, check_dataset_reference, resolve_data_path
from posttrain.errors import UserError
from posttrain.methods import Method, get_method, registered_methods
from posttrain.models import EMBEDDED_MODELS
from posttrain.parsing import (
    BadKeysError,
    RecipeError,
    YamlConfig,
    builder_hints,
    cli_keys,
    data_sections,
    drop_overrides,
    parse_dataclasses,
    peek,
    read_yaml,
)
from rewards.registry import parse_reward_spec

logger = logging.getLogger(__name__)

REWARDS_HINT = "`posttrain rewards` lists the registered rewards."


@dataclass
class Recipe:
    """A parsed, validated recipe."""

    method: Method
    recipe: RecipeArguments
    model: ModelConfig
    data: DataArguments
    trainer: Any  # the method's trainer config (a TRL config subclass)
    builder: Any = None  # the data builder's fields, when the recipe (or its method) names one
    path: Path | None = None
    explicit: set[str] = field(default_factory=set)  # keys the YAML or the command line set

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()


def _owner_hints() -> dict[str, str]:
    """Keys that belong to a data builder or a method not in use, and what to set to use them."""
    hints = builder_hints()
    for name, method in registered_methods().items():
        for f in dataclasses.fields(method.config_class):
            hints.setdefault(f.name, f"it belongs to method {name!r}")
    return hints


def apply_cpu_defaults(config: dict[str, Any], overrides: list[str]) -> None:
    """On a machine without CUDA, default ``bf16`` to false unless the recipe sets it.

    TRL's configs default to bf16 mixed precision; on CPUs without bf16 matrix units that is far slower, not
    faster (measured here: one GRPO step of 8 x 128 tokens took 389 s under bf16 autocast, against ~17 s of
    forward and backward in float32). A recipe that sets ``bf16`` itself keeps its choice.
    """
    if torch.cuda.is_available() or "bf16" in config or "bf16" in cli_keys(overrides):
        return
    config["bf16"] = False
    logger.info("No GPU: training in float32 (bf16: false); set bf16: true in the recipe to override.")


def load_recipe(path: str | os.PathLike | None, overrides: list[str] | None = None) -> Recipe:
    """Parse a recipe YAML (or only command-line fields when ``path`` is None) and validate it.

    Unknown keys and wrong values stop the parse; the rest of the recipe is then checked without them, so that
    one report holds every problem (a recipe brought from open-r1 has several of each kind)."""
    overrides = list(overrides or [])
    recipe_path = Path(path) if path is not None else None
    config = read_yaml(recipe_path) if recipe_path is not None else YamlConfig()
    where = str(recipe_path) if recipe_path is not None else "the command line"

    for key, value in (config.pop("env", None) or {}).items():
        os.environ[str(key)] = str(value)

    first = YamlConfig(config, lines=config.lines)
    try:
        return _build_recipe(first, overrides, recipe_path, where)
    except BadKeysError as err:
        rest = YamlConfig({k: v for k, v in first.items() if k not in err.keys}, lines=config.lines)
        others, hints = _problems_without(rest, drop_overrides(overrides, err.keys), recipe_path, where)
        if not others:
            raise
        more = f"and {len(others)} more problem{'s' if len(others) > 1 else ''}:"
        message = f"{err}\n{more}\n  " + "\n  ".join(others)
        hint = " ".join(dict.fromkeys(h for h in (err.hint, *hints) if h)) or None
        raise RecipeError(message, hint=hint) from err


def _problems_without(
    config: YamlConfig, overrides: list[str], recipe_path: Path | None, where: str
) -> tuple[list[str], list[str]]:
    """The problems of a recipe whose bad keys were taken out, one line each, and the hints that came with them.

    A trainer config that refuses its values (TRL's own checks, such as a generation batch that
    num_generations does not divide) stops the checks that need it; the rewards are checked all the same, since
    their names are what a recipe from open-r1 gets wrong most."""
    problems: list[str] = []
    hints: list[str] = []
    try:
        _build_recipe(config, overrides, recipe_path, where)
    except BadKeysError as err:
        problems, hints = err.problems, [err.hint]
    except UserError as err:
        head, indented, body = str(err).partition(":\n  ")
        if indented and head.startswith(where):  # a report of several problems, one per indented line
            problems = body.split("\n  ")
        else:
            problems = [str(err).removeprefix(f"{where}: ")]
        hints = [err.hint]
    base_dir = recipe_path.parent if recipe_path is not None else Path.cwd()
    specs = config.get("reward_funcs")
    for spec in specs if isinstance(specs, list) else []:
        try:
            parse_reward_spec(spec, base_dir=base_dir)
        except ValueError as err:
            if str(err) not in problems:
                problems.append(str(err))
                hints.append(REWARDS_HINT)
    return problems, [h for h in hints if h]


def _build_recipe(config: YamlConfig, overrides: list[str], recipe_path: Path | None, where: str) -> Recipe:
    explicit = set(config) | set(cli_keys(overrides))
    try:
        method = get_method(str(peek(config, overrides, "method", "grpo")))
    except ValueError as err:
        raise RecipeError(f"{where}: {err}", hint="`posttrain methods` lists the methods.") from err
    try:
        data_types = data_sections(config, overrides, method.data_builder)
    except ValueError as err:
        raise RecipeError(f"{where}: {err}", hint=getattr(err, "hint", None)) from err
    apply_cpu_defaults(config, overrides)
    types = (RecipeArguments, ModelConfig, *data_types, method.config_class)
    parsed = parse_dataclasses(config, overrides, types, where, hints=_owner_hints())
    recipe_args, model_args, data_args, *builder_args, trainer_args = parsed
    recipe = Recipe(
        method=method,
        recipe=recipe_args,
        model=model_args,
        data=data_args,
        trainer=trainer_args,
        builder=builder_args[0] if builder_args else None,
        path=recipe_path,
        explicit=explicit,
    )
    validate_recipe(recipe)
    return recipe


def validate_recipe(recipe: Recipe) -> None:
    """Checks that need more than one field, run before any data or model loads: the shared ones, the
    method's family's and the method's own, all reported in one error."""
    errors: list[str] = []
    where = str(recipe.path) if recipe.path else "recipe"
    if not recipe.data.dataset_name:
        errors.append("dataset_name is required (a registered dataset, a local file or a datasets source).")
    else:
        recipe.data.dataset_name = resolve_data_path(recipe.data.dataset_name, recipe.base_dir)
        try:
            check_dataset_reference(recipe.data.dataset_name)
        except (DataError, FileNotFoundError) as err:
            errors.append(str(err))
    if not recipe.model.model_name_or_path:
        errors.append(
            "model_name_or_path is required (e.g. 'smollm2-135m-instruct', a local path or a hub id)."
        )
    else:
        errors += model_reference_errors(recipe.model.model_name_or_path)
    if recipe.model.load_in_4bit and not recipe.model.use_peft:
        errors.append("load_in_4bit (QLoRA) trains adapters only: also set use_peft: true.")
    errors += environment_errors(recipe)
    errors += recipe.method.family.check(recipe)
    if recipe.method.check is not None:
        errors += recipe.method.check(recipe)
    if recipe.recipe.heldout_metric:
        try:
            parse_reward_spec(recipe.recipe.heldout_metric, base_dir=recipe.base_dir)
        except ValueError as err:
            errors.append(f"heldout_metric: {err}")
    if recipe.recipe.evaluation and not (recipe.base_dir / recipe.recipe.evaluation).is_file():
        errors.append(
            f"evaluation {recipe.recipe.evaluation!r} does not exist (looked for {recipe.base_dir / recipe.recipe.evaluation})."
        )
    resume = recipe.trainer.resume_from_checkpoint
    if resume not in (None, "auto") and not Path(str(resume)).is_dir():
        errors.append(
            f"resume_from_checkpoint {resume!r} is neither 'auto' nor an existing checkpoint directory."
        )
    if errors:
        hints = {
            "reward spec": "`posttrain rewards` lists the registered rewards.",
            "Unknown dataset": "`posttrain datasets` lists the registered datasets.",
        }
        hint = " ".join(h for found, h in hints.items() if any(found in e for e in errors)) or None
        raise RecipeError(f"{where} cannot run:\n  " + "\n  ".join(errors), hint=hint)


# attn_implementation -> the package it needs (all of them need a CUDA GPU).
_ATTENTION_PACKAGES = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}


def environment_errors(recipe: Recipe) -> list[str]:
    """Settings this machine cannot honour, which would otherwise fail only when the trainer starts: a tracker
    that is not installed, pushing to the hub without a token or network, an attention kernel that is missing."""
    errors = []
    installed = set(get_available_reporting_integrations())
    for tracker in getattr(recipe.trainer, "report_to", None) or []:
        if tracker not in installed:
            errors.append(
                f"report_to {tracker!r}: its package is not installed here (installed trackers: "
                f"{', '.join(sorted(installed)) or 'none'}). `report_to: tensorboard` works with no account and "
                "no network; install the tracker's package to use it."
            )
    if getattr(recipe.trainer, "push_to_hub", False):
        if _hub_offline():
            errors.append(
                "push_to_hub: true, but the hub is offline here (HF_HUB_OFFLINE): set push_to_hub: false."
            )
        elif get_token() is None:
            errors.append(
                "push_to_hub: true needs a Hugging Face token (HF_TOKEN or `hf auth login`) and network; none is "
                "set here. Set push_to_hub: false, or log in first."
            )
    attention = recipe.model.attn_implementation
    if attention in _ATTENTION_PACKAGES:
        package = _ATTENTION_PACKAGES[attention]
        if importlib.util.find_spec(package) is None:
            errors.append(
                f"attn_implementation {attention!r} needs the {package!r} package, which is not installed here; "
                "use 'sdpa' (PyTorch's own, the default) or install it."
            )
        elif not torch.cuda.is_available():
            errors.append(f"attn_implementation {attention!r} needs a CUDA GPU; use 'sdpa' on this machine.")
    return errors


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def model_reference_errors(name: str, key: str = "model_name_or_path") -> list[str]:
    """What is wrong with a model reference, found without loading anything or calling the hub.

    An embedded name or an existing checkpoint folder passes. A path that is meant to be local (absolute, ``.``
    or ``~``, nested folders, or in an existing folder) must exist. A bare name that nearly matches an embedded
    one (a typo, e.g. ``smollm2-135m``) gets that name at once instead of a trip to the hub. Other names are hub
    ids, refused only when ``HF_HUB_OFFLINE`` is set.
    """
    if name in EMBEDDED_MODELS:
        return []
    path = Path(name).expanduser()
    if path.is_dir():
        markers = ("config.json", "adapter_config.json")
        if not any((path / marker).is_file() for marker in markers):
            return [f"{key} {name!r} is a folder without config.json: it is not a saved model."]
        return []
    if path.exists():
        return [f"{key} {name!r} is a file; a model is a folder (with config.json) or a name."]
    in_folder = path.parent != Path(".") and path.parent.is_dir()
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or in_folder:
        warm_start = (
            f", though its folder {str(path.parent)!r} does: if another recipe writes it (a warm start), "
            "train that one first"
            if in_folder
            else ""
        )
        return [f"{key} {name!r} does not exist{warm_start}."]
    embedded = sorted(EMBEDDED_MODELS)
    close = difflib.get_close_matches(name, embedded, n=1, cutoff=0.5) if "/" not in name else []
    if close:
        return [
            f"Unknown model {name!r}: it is neither an embedded model ({', '.join(embedded)}) nor a local folder. "
            f"Did you mean {close[0]!r}?"
        ]
    if _hub_offline():
        return [
            f"{key} {name!r} is neither embedded nor a local folder, and the hub is offline (HF_HUB_OFFLINE)."
        ]
    return []
