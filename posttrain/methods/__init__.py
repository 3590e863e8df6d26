"""The method registry: each post-training method is one small :class:`Method` record.

A method names its trainer config and trainer class (a subclass of TRL's, overriding one hook such as
``compute_loss`` when it has its own loss), optional data stages that rewrite the dataset before training
(self-generated targets, refined corpora, marker lists), and default rewards. The shared layer does the rest.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasets import DatasetDict

# A data stage takes the loaded (and prompt-formatted) dataset and the stage context, and returns a new one.
DataStage = Callable[[DatasetDict, "StageContext"], DatasetDict]


@dataclass
class StageContext:
    """What a data stage may use: the parsed recipe and lazily loaded model/tokenizer."""

    recipe: Any
    load_model: Callable[[], Any]
    tokenizer: Any


@dataclass(frozen=True)
class Method:
    """One post-training method as the shared layer sees it."""

    name: str
    kind: str  # "grpo" or "sft": which TRL trainer family, data format and validation apply
    config_class: type
    trainer_class: type
    description: str
    data_stages: tuple[DataStage, ...] = field(default_factory=tuple)
    default_rewards: tuple[str, ...] = field(default_factory=tuple)
    # Recipe checks of the method's own, run with the shared ones before anything loads: recipe -> errors.
    check: Callable[[Any], list[str]] | None = None


_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    if method.kind not in ("grpo", "sft"):
        raise ValueError(f"Method {method.name!r}: kind must be 'grpo' or 'sft', got {method.kind!r}.")
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    _load_builtin_methods()
    if name not in _METHODS:
        close = difflib.get_close_matches(name, _METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown method {name!r}.{hint} Known methods: {', '.join(sorted(_METHODS))}.")
    return _METHODS[name]


def registered_methods() -> dict[str, Method]:
    _load_builtin_methods()
    return dict(_METHODS)


def _load_builtin_methods() -> None:
    if _METHODS:
        return
    from posttrain.configs import GRPORecipeConfig, SFTRecipeConfig
    from posttrain.trainers import PosttrainGRPOTrainer, PosttrainSFTTrainer

    register_method(
        Method(
            name="grpo",
            kind="grpo",
            config_class=GRPORecipeConfig,
            trainer_class=PosttrainGRPOTrainer,
            description="Group Relative Policy Optimization with rule-based or plug-in rewards.",
        )
    )
    register_method(
        Method(
            name="sft",
            kind="sft",
            config_class=SFTRecipeConfig,
            trainer_class=PosttrainSFTTrainer,
            description="Supervised fine-tuning on prompt/completion pairs (loss on the completion).",
        )
    )
    from posttrain.methods import cls_rl

    register_method(cls_rl.METHOD)
