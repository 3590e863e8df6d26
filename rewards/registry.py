"""The reward registry: turns the reward specs of a recipe into checked TRL reward functions.

A spec names a reward in one of three ways: a registered name (``cls_accuracy``), an importable
``package.module:function``, or a plug-in file ``path/to/file.py:function``; as a dict it can add a
``weight`` and ``kwargs`` bound to the function. Specs are validated eagerly, before any model
loads, and :func:`load_reward_functions` returns the wrapped functions and their weights.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import logging
import math
import numbers
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from posttrain.renames import reward_rename
from rewards.contract import (
    TRL_REWARD_KWARGS,
    CheckedReward,
    OnError,
    checked_reward,
    pop_error_counts,
    reward_required_columns,
)

__all__ = [
    "RewardSpec",
    "load_reward_functions",
    "parse_reward_spec",
    "pop_error_counts",
    "register_reward",
    "registered_rewards",
    "resolve_reward",
    "reward_required_columns",
]

logger = logging.getLogger(__name__)

RewardFunction = Callable[..., Any]

_REGISTRY: dict[str, RewardFunction] = {}
_SPEC_KEYS = ("name", "weight", "kwargs")
# Plug-in files already executed, by resolved path: executing a file twice would make new
# function objects and run its top-level code again.
_FILE_MODULES: dict[Path, ModuleType] = {}
_file_lock = threading.Lock()


def register_reward(
    name: str | RewardFunction | None = None, *, overwrite: bool = False
) -> Callable[[RewardFunction], RewardFunction] | RewardFunction:
    """Register a reward function under ``name`` (default: its ``__name__``); use as a decorator.

    ``@register_reward("my_reward")``, ``@register_reward()`` and a bare ``@register_reward`` all
    work. The registered name is the reward's metric name. Registering another function under a
    taken name is a ``ValueError`` unless ``overwrite=True``; re-registering the same function (a
    module imported twice) is allowed.
    """
    if callable(name):
        return register_reward(None, overwrite=overwrite)(name)

    def decorator(fn: RewardFunction) -> RewardFunction:
        key = name if name is not None else getattr(fn, "__name__", None)
        if not isinstance(key, str) or not key.strip() or ":" in key or key.endswith(".py"):
            raise ValueError(
                f"cannot register reward {fn!r} under {key!r}: a registered name is a non-empty "
                f"string without ':' that does not end in '.py' (those read as import targets)"
            )
        existing = _REGISTRY.get(key)
        if existing is not None and not overwrite and not _same_function(existing, fn):
            raise ValueError(
                f"a reward is already registered as {key!r} ({_describe(existing)}); choose another "
                f"name or pass overwrite=True"
            )
        _REGISTRY[key] = fn
        return fn

    return decorator


def registered_rewards() -> dict[str, RewardFunction]:
    """Return a copy of the registry, name -> function."""
    return dict(_REGISTRY)


def _same_function(a: RewardFunction, b: RewardFunction) -> bool:
    return a is b or (
        getattr(a, "__module__", None) == getattr(b, "__module__", None)
        and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None)
    )


def _describe(fn: RewardFunction) -> str:
    module = getattr(fn, "__module__", None) or "?"
    return f"{module}.{getattr(fn, '__qualname__', type(fn).__name__)}"


@dataclass(frozen=True)
class RewardSpec:
    """A validated reward spec.

    Attributes:
        target: what to load: a registered name, ``package.module:function``, or
            ``/absolute/path/file.py:function`` (relative paths are resolved when parsing).
        weight: the reward's weight in the sum GRPO optimises; 0 logs the reward without training
            on it, a negative weight makes it a penalty.
        kwargs: keyword arguments bound to the function on every call.
        name: the metric name, before :func:`load_reward_functions` makes duplicates unique.
    """

    target: str
    weight: float
    kwargs: dict[str, Any] = field(hash=False)
    name: str


class BoundReward:
    """A reward with some keyword arguments fixed by the recipe.

    Unlike ``functools.partial``, the bound values win over keywords given at call time, so a
    dataset column that happens to share the name cannot silently override the recipe. The bound
    parameters disappear from the signature, so they are not reported as required columns.
    """

    wraps_reward = True  # `func` is the reward it calls

    def __init__(self, fn: RewardFunction, kwargs: Mapping[str, Any], name: str) -> None:
        self.func = fn
        self.kwargs = dict(kwargs)
        self.__name__ = name
        self.__qualname__ = name
        self.__doc__ = getattr(fn, "__doc__", None)
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            signature = None
        if signature is not None:
            self.__signature__ = signature.replace(
                parameters=[p for p in signature.parameters.values() if p.name not in self.kwargs]
            )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **{**kwargs, **self.kwargs})

    def __repr__(self) -> str:
        return f"BoundReward({self.__name__!r}, {self.kwargs!r})"


def _spec_error(spec: Any, problem: str) -> ValueError:
    return ValueError(f"reward spec {spec!r}: {problem}")


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def _resolve_registered(text: str, spec: Any) -> RewardFunction:
    if text in _REGISTRY:
        return _REGISTRY[text]
    renamed = reward_rename(text)
    if renamed is not None:  # open-r1's name: a spelling match would point at the wrong reward
        raise _spec_error(spec, f"no reward is registered as {text!r}: {renamed.hint()}.")
    hint = _suggest(text, _REGISTRY)
    if "." in text or "/" in text:
        hint += " To import a function, write 'package.module:function' or 'path/to/file.py:function'."
    known = ", ".join(sorted(_REGISTRY))
    raise _spec_error(spec, f"no reward is registered as {text!r}.{hint} Registered: {known}.")


def _resolve_file(path_text: str, base_dir: str | Path | None, spec: Any) -> Path:
    path = Path(path_text).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [Path(base_dir) / path] if base_dir is not None else []
        candidates.append(Path.cwd() / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise _spec_error(
        spec,
        f"plug-in file {path_text!r} not found (looked at {tried}); relative paths are resolved "
        f"against the recipe's folder, then the current directory",
    )


def _load_file_module(path: Path, spec: Any) -> ModuleType:
    with _file_lock:
        if path in _FILE_MODULES:
            return _FILE_MODULES[path]
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
        module_name = f"_reward_plugin_{path.stem}_{digest}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise _spec_error(spec, f"cannot load {str(path)!r} as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        # In sys.modules while it runs, as for a normal import (dataclasses and pickling look
        # the module up by name).
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise _spec_error(
                spec, f"importing plug-in file {str(path)!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        _FILE_MODULES[path] = module
        return module


def _import_module(module_name: str, spec: Any) -> ModuleType:
    if not all(part.isidentifier() for part in module_name.split(".")):
        raise _spec_error(spec, f"{module_name!r} is not a module path; write 'package.module:function'")
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise _spec_error(
                spec,
                f"module {module_name!r} not found; is its package installed and on PYTHONPATH? "
                f"For a file, write 'path/to/file.py:function'",
            ) from exc
        raise _spec_error(
            spec, f"importing module {module_name!r} failed: ModuleNotFoundError: {exc}"
        ) from exc
    except Exception as exc:
        raise _spec_error(
            spec, f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _get_attribute(module: ModuleType, attribute: str, where: str, spec: Any) -> Any:
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            public = [n for n in dir(value) if not n.startswith("_")]
            raise _spec_error(spec, f"{where} has no attribute {attribute!r}.{_suggest(part, public)}")
        value = getattr(value, part)
    return value


def _resolve_target(
    text: str, base_dir: str | Path | None, spec: Any
) -> tuple[str, RewardFunction, str | None]:
    """Load a string target; return (canonical target, object, attribute name or None)."""
    if not text:
        raise _spec_error(spec, "the reward name is empty")
    if ":" not in text:
        return text, _resolve_registered(text, spec), None
    location, attribute = text.rsplit(":", 1)
    if not attribute or not all(part.isidentifier() for part in attribute.split(".")):
        raise _spec_error(spec, f"{attribute!r} after ':' is not a function name")
    if location.endswith(".py") or "/" in location or "\\" in location:
        path = _resolve_file(location, base_dir, spec)
        module = _load_file_module(path, spec)
        target = f"{path}:{attribute}"
        where = f"plug-in file {str(path)!r}"
    else:
        module = _import_module(location, spec)
        target = text
        where = f"module {location!r}"
    value = _get_attribute(module, attribute, where, spec)
    if not callable(value):
        raise _spec_error(spec, f"{attribute!r} in {where} is a {type(value).__name__}, not a function")
    return target, value, attribute


def _check_signature(fn: RewardFunction, kwargs: Mapping[str, Any], spec: Any) -> None:
    """Fail now on rewards TRL could not call, and on kwargs the reward does not take."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # no signature to check (e.g. a builtin); the contract wrapper still checks calls
    parameters = signature.parameters
    if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        raise _spec_error(
            spec,
            "the reward must accept **kwargs: TRL passes prompts, completion_ids, trainer_state, "
            "log_extra, log_metric and every dataset column to every reward. Add **kwargs to "
            "its parameters",
        )
    for parameter in parameters.values():
        if parameter.default is not parameter.empty or parameter.name in kwargs:
            continue
        if parameter.kind is parameter.POSITIONAL_ONLY:
            raise _spec_error(
                spec,
                f"parameter {parameter.name!r} is positional-only, but TRL passes everything by keyword",
            )
        if parameter.name in ("prompt", "completion"):
            raise _spec_error(
                spec,
                f"parameter {parameter.name!r} is never passed: TRL passes the batch as "
                f"'{parameter.name}s' and drops the dataset column {parameter.name!r}",
            )
    named = {
        p.name
        for p in parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in TRL_REWARD_KWARGS
    }
    for key in kwargs:
        if key in TRL_REWARD_KWARGS:
            raise _spec_error(spec, f"kwargs cannot set {key!r}: TRL passes it on every call")
        if key not in named:
            # Every reward takes **kwargs, so a misspelt key would be swallowed silently.
            accepted = ", ".join(sorted(named)) or "none"
            raise _spec_error(
                spec,
                f"the reward has no parameter {key!r} to bind.{_suggest(key, named)} "
                f"Parameters it takes: {accepted}",
            )


def _metric_name(fn: RewardFunction, registered: str | None, attribute: str | None) -> str:
    # A registered name is chosen for display; otherwise the function's own __name__ (factories
    # set a stable one), unless it has none or a useless one such as "<lambda>".
    if registered is not None:
        return registered
    own = getattr(fn, "__name__", None)
    if isinstance(own, str) and own.isidentifier():
        return own
    return (attribute or type(fn).__name__).rsplit(".", 1)[-1]


def _check_weight(weight: Any, spec: Any) -> float:
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise _spec_error(spec, f"weight must be a number, got {type(weight).__name__} {weight!r}")
    if not math.isfinite(float(weight)):
        raise _spec_error(spec, f"weight must be finite, got {weight!r}")
    return float(weight)


def parse_reward_spec(
    spec: str | Mapping[str, Any] | RewardSpec, *, base_dir: str | Path | None = None
) -> RewardSpec:
    """Validate one reward spec and return it as a :class:`RewardSpec`.

    Forms:

    - ``"cls_accuracy"``: a registered name (see :func:`registered_rewards`);
    - ``"package.module:function"``: an importable function;
    - ``"path/to/file.py:function"``: a function in a plug-in file; a relative path is looked up
      under ``base_dir`` (the recipe's folder), then the current directory;
    - ``{"name": <one of the above>, "weight": 1.0, "kwargs": {...}}``: ``weight`` defaults to
      1.0; ``kwargs`` are bound to the function, whose metric name stays the same.

    The target is imported now, so that every mistake surfaces before a model loads: each raises a
    ``ValueError`` that quotes the spec and says what to change.
    """
    if isinstance(spec, RewardSpec):
        return spec
    if isinstance(spec, str):
        text, weight, kwargs = spec, 1.0, {}
    elif isinstance(spec, Mapping):
        unknown = [key for key in spec if key not in _SPEC_KEYS]
        if unknown:
            hints = "".join(_suggest(str(key), _SPEC_KEYS) for key in unknown)
            raise _spec_error(
                spec,
                f"unknown key(s) {', '.join(repr(k) for k in unknown)}; a reward dict takes "
                f"'name', 'weight' and 'kwargs'.{hints}",
            )
        if "name" not in spec:
            raise _spec_error(spec, "a reward dict needs 'name', e.g. {'name': 'cls_accuracy'}")
        text = spec["name"]
        if not isinstance(text, str):
            raise _spec_error(spec, f"'name' must be a string, got {type(text).__name__}")
        weight = _check_weight(spec.get("weight", 1.0), spec)
        kwargs = spec.get("kwargs") or {}
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise _spec_error(spec, "'kwargs' must be a mapping from parameter names to values")
    else:
        raise ValueError(f"a reward spec must be a string or a dict, got {type(spec).__name__}: {spec!r}")
    target, fn, attribute = _resolve_target(text.strip(), base_dir, spec)
    _check_signature(fn, kwargs, spec)
    registered = None if attribute is not None else target
    return RewardSpec(
        target=target,
        weight=weight,
        kwargs=dict(kwargs),
        name=_metric_name(fn, registered, attribute),
    )


def resolve_reward(spec: RewardSpec) -> RewardFunction:
    """Load the function a parsed spec names, with its kwargs bound; not yet contract-checked."""
    _, fn, _ = _resolve_target(spec.target, None, spec.target)
    if spec.kwargs:
        return BoundReward(fn, spec.kwargs, spec.name)
    return fn


def load_reward_functions(
    specs: Iterable[str | Mapping[str, Any] | RewardSpec],
    *,
    base_dir: str | Path | None = None,
    on_error: OnError = "raise",
    timeout: float | None = None,
) -> tuple[list[CheckedReward], list[float]]:
    """Resolve reward specs into contract-checked functions and their weights, in order.

    Every spec is parsed (see :func:`parse_reward_spec`) before any is loaded, so one bad spec
    fails the lot. Each function is wrapped by :func:`rewards.contract.checked_reward` with
    ``on_error`` and ``timeout`` (seconds per call, None for no limit). Metric names must be unique
    in a run: a repeated name gets a suffix (``numeric_answer``, ``numeric_answer_2``, ...).
    """
    if isinstance(specs, str | Mapping | RewardSpec):
        specs = [specs]
    parsed = [parse_reward_spec(spec, base_dir=base_dir) for spec in specs]
    functions: list[CheckedReward] = []
    weights: list[float] = []
    taken: set[str] = set()
    for spec in parsed:
        name = spec.name
        if name in taken:
            suffix = 2
            while f"{name}_{suffix}" in taken:
                suffix += 1
            name = f"{name}_{suffix}"
            logger.info("reward %r is listed more than once; logging this one as %r", spec.name, name)
        taken.add(name)
        functions.append(checked_reward(resolve_reward(spec), name=name, on_error=on_error, timeout=timeout))
        weights.append(spec.weight)
    return functions, weights
