"""The method registry: each post-training method is one small :class:`Method` record.

A method names its trainer family (:mod:`posttrain.methods.families`: GRPO, SFT, a reward model, or one of
its own), its trainer config and trainer class (subclasses of the family's, overriding one hook such as
``compute_loss`` when it has its own loss), optional data stages that write a dataset before training (see
:mod:`posttrain.stages`), a default data builder, default rewards, and checks of its own. The shared layer
does the rest; nothing outside a method's record branches on which method or family it is.

Built-in methods are the subpackages of this package; methods from other packages register through the
``posttrain.methods`` entry-point group (each entry point names a :class:`Method`) or by calling
:func:`register_method`.

A record may name its family by name (``"grpo"``, ``"sft"``, ``"reward_model"``) and its config and trainer
classes, its stages and its check as ``"module:attribute"``: they are imported when first used. Listing the methods then imports no training
stack (``posttrain methods`` starts in well under a second), and a recipe loads only its own method's code.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "posttrain.methods"
# The built-in trainer families a record may name instead of giving the object (posttrain.methods.families).
FAMILY_NAMES = ("grpo", "sft", "reward_model")
_LAZY_FIELDS = frozenset({"family", "config_class", "trainer_class", "stages", "check"})


def _resolve(field_name: str, reference: str) -> Any:
    """The object a lazy record field names: a built-in family by name, a class by ``module:Class``."""
    if field_name == "family":
        return importlib.import_module(f"{__name__}.families").FAMILIES[reference]
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Method:
    """One post-training method as the shared layer sees it.

    ``family`` is a :class:`posttrain.methods.families.TrainerFamily`: it formats the data, checks the recipe,
    builds the trainer's arguments and loads the model for every method of that family.
    """

    name: str
    family: Any  # a TrainerFamily, or the name of a built-in one
    config_class: Any  # a class, or "module:Class"
    trainer_class: Any  # a class, or "module:Class"
    description: str
    # Stages (posttrain.stages.Stage) that write this method's training data before it trains.
    stages: tuple[Any, ...] = field(default_factory=tuple)
    default_rewards: tuple[str, ...] = field(default_factory=tuple)
    # A data builder (posttrain.data.builders) used when the recipe names none.
    data_builder: str | None = None
    # Columns a target-learning trainer keeps next to prompt and completion (e.g. a per-row label its loss reads).
    keep_columns: tuple[str, ...] = field(default_factory=tuple)
    # Recipe checks of the method's own, run with the shared ones before anything loads: recipe -> errors.
    check: Callable[[Any], list[str]] | None = None

    def __getattribute__(self, attribute: str) -> Any:
        value = object.__getattribute__(self, attribute)
        if attribute in _LAZY_FIELDS and isinstance(value, str):
            value = _resolve(attribute, value)
            object.__setattr__(self, attribute, value)  # resolved once
        return value

    @property
    def kind(self) -> str:
        """The family's name, for listings (without importing the family)."""
        family = object.__getattribute__(self, "family")
        return family if isinstance(family, str) else family.name


_METHODS: dict[str, Method] = {}
_discovered = False


def register_method(method: Method, *, overwrite: bool = False) -> Method:
    """Make ``method`` nameable in recipes; another method of the same name needs ``overwrite``."""
    family = object.__getattribute__(method, "family")
    if isinstance(family, str):
        if family not in FAMILY_NAMES:
            raise TypeError(
                f"Method {method.name!r}: family {family!r} is not a built-in family ({', '.join(FAMILY_NAMES)}); "
                "give a posttrain.methods.families.TrainerFamily object instead."
            )
        family = None
    for hook in ("name", "format", "check", "trainer_kwargs", "load_model", "load_tokenizer"):
        if family is not None and not hasattr(family, hook):
            raise TypeError(
                f"Method {method.name!r}: family {family!r} is not a trainer family (it has no {hook!r}); "
                "subclass posttrain.methods.families.TrainerFamily."
            )
    known = _METHODS.get(method.name)
    if known is not None and known is not method and not overwrite:
        raise ValueError(f"A method named {method.name!r} is already registered ({known.description}).")
    _METHODS[method.name] = method
    return method


def discover_methods() -> None:
    """Register the built-in methods (this package's subpackages) and those of installed plug-ins, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.ispkg:
            module = importlib.import_module(f"{__name__}.{info.name}")
            for method in getattr(module, "METHODS", ()):
                register_method(method)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception as err:  # a broken plug-in must not hide the built-ins
            logger.warning("Method plug-in %r (%s) failed to load: %s", entry.name, entry.value, err)
            continue
        for method in loaded if isinstance(loaded, (list, tuple)) else [loaded]:
            register_method(method)


def get_method(name: str) -> Method:
    discover_methods()
    if name not in _METHODS:
        close = difflib.get_close_matches(name, _METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown method {name!r}.{hint} Known methods: {', '.join(sorted(_METHODS))}.")
    return _METHODS[name]


def registered_methods() -> dict[str, Method]:
    discover_methods()
    return dict(_METHODS)
