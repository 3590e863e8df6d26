"""The reward-function contract of TRL's GRPOTrainer, and a wrapper that enforces it.

TRL (1.16) calls every reward as ``fn(prompts=..., completions=..., completion_ids=..., **columns,
trainer_state=..., log_extra=..., log_metric=...)`` and expects back one ``float | None`` per
completion, ``None`` meaning "this reward does not apply". :func:`checked_reward` wraps a reward so
that a broken return value or an exception fails with a message naming the reward and the sample,
or, with ``on_error="none"``, scores only the failing samples ``None`` and counts them so that the
trainer can log ``rewards/<name>/errors`` (see :func:`pop_error_counts`).

A recipe's ``response_prefix`` (the start of the answer, written into the prompt so that the model
continues from it) reaches rewards as the dataset column ``response_prefix``; the wrapper puts it back in
front of each completion, so every reward scores the answer whole.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import numbers
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

logger = logging.getLogger(__name__)

#: Keyword arguments TRL passes to every reward besides the dataset columns. None of them is a
#: dataset column, so they never count as "required columns".
TRL_REWARD_KWARGS = frozenset(
    {
        "prompts",
        "completions",
        "completion_ids",
        "trainer_state",
        "log_extra",
        "log_metric",
        "environments",
    }
)

OnError = Literal["raise", "none"]

_PREVIEW_CHARS = 80

# Errors counted since the last `pop_error_counts`, keyed by reward name. A lock because TRL may
# run async rewards on a daemon event-loop thread while the main thread logs.
_pending_errors: Counter[str] = Counter()
_pending_lock = threading.Lock()


class RewardContractError(RuntimeError):
    """A reward function raised, or returned something TRL cannot use."""


class _BadValue(Exception):
    """One returned item is not a finite number or None; the text says what it is."""


def completion_text(completion: Any) -> str:
    """Return the text of one completion, in either of TRL's formats.

    Standard format: the completion is a string and is returned as is. Conversational format: a
    list of messages; the content of the last assistant message is returned (a message with no
    role counts as assistant), which is where the final answer is when tool calls interleave
    several messages. Content given as a list of parts keeps only the text parts, concatenated.
    An empty message list gives ``""``.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if isinstance(completion, Sequence):
        for message in reversed(completion):
            if not isinstance(message, Mapping):
                raise TypeError(
                    f"a conversational completion must be a list of message dicts, got an item of "
                    f"type {type(message).__name__}"
                )
            if message.get("role", "assistant") == "assistant":
                return _content_text(message.get("content"))
        return ""
    raise TypeError(f"a completion must be a string or a list of messages, got {type(completion).__name__}")


def with_response_prefix(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Reward arguments with each row's ``response_prefix`` column put in front of its completion.

    Conversational completions get it in front of their first assistant message's text. Without the column
    (or with empty prefixes) the arguments are returned unchanged.
    """
    prefixes = kwargs.get("response_prefix")
    completions = kwargs.get("completions")
    if (
        not isinstance(prefixes, list | tuple)
        or not any(prefixes)
        or not isinstance(completions, list | tuple)
    ):
        return kwargs
    if len(prefixes) != len(completions):
        raise RewardContractError(
            f"{len(prefixes)} response_prefix values for {len(completions)} completions; expected one per completion"
        )
    return {**kwargs, "completions": [_prefixed(c, p) for c, p in zip(completions, prefixes, strict=True)]}


def _prefixed(completion: Any, prefix: str | None) -> Any:
    if not prefix:
        return completion
    if isinstance(completion, str):
        return prefix + completion
    messages = [dict(m) if isinstance(m, Mapping) else m for m in completion]
    for message in messages:
        if isinstance(message, dict) and message.get("role", "assistant") == "assistant":
            content = message.get("content")
            if isinstance(content, str) or content is None:
                message["content"] = prefix + (content or "")
            else:
                message["content"] = [{"type": "text", "text": prefix}, *content]
            break
    return messages


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        # Multimodal content: [{"type": "text", "text": "..."}, {"type": "image"}, ...]
        return "".join(
            part.get("text") or ""
            for part in content
            if isinstance(part, Mapping) and part.get("type", "text") == "text"
        )
    raise TypeError(f"message content must be a string or a list of parts, got {type(content).__name__}")


def reward_required_columns(fn: Callable[..., Any]) -> set[str]:
    """Return the dataset columns that ``fn`` needs, read from its signature.

    These are its named parameters without a default, other than the keywords TRL always passes
    (:data:`TRL_REWARD_KWARGS`). A wrapper from :func:`checked_reward` answers with the columns of
    the function it wraps. A callable without a readable signature needs nothing we can know of.
    """
    known = getattr(fn, "required_columns", None)
    if known is not None:
        return set(known)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return set()
    return {
        parameter.name
        for parameter in signature.parameters.values()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        and parameter.default is parameter.empty
        and parameter.name not in TRL_REWARD_KWARGS
    }


def pop_error_counts(names: Iterable[str] | None = None) -> dict[str, int]:
    """Return how many samples each reward scored ``None`` because of an error since the last pop.

    Without ``names``, returns the rewards that had errors and resets every count. With ``names``,
    returns exactly those names (zero included, so a logged metric has no gaps) and resets them.
    """
    with _pending_lock:
        if names is None:
            counts = {name: count for name, count in _pending_errors.items() if count}
            _pending_errors.clear()
        else:
            counts = {name: _pending_errors.pop(name, 0) for name in names}
    return counts


def _preview(completion: Any) -> str:
    try:
        text = completion_text(completion)
    except TypeError:
        text = repr(completion)
    if len(text) > _PREVIEW_CHARS:
        text = text[:_PREVIEW_CHARS] + "..."
    return repr(text)


def _as_list(output: Any) -> list[Any] | None:
    """The items of a reward's return value, or None if it is not a 1-D sequence."""
    if isinstance(output, list | tuple):
        return list(output)
    # numpy arrays and torch tensors, duck-typed so that neither has to be installed.
    if getattr(output, "ndim", None) == 1 and hasattr(output, "tolist"):
        return list(output.tolist())
    return None


def _as_reward_value(value: Any) -> float | None:
    """Convert one returned item to ``float | None`` or raise :class:`_BadValue`.

    Booleans are accepted as 1.0 / 0.0: ``pred == gold`` is the natural way to write a 0/1 reward.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real):
        number = float(value)
    elif getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        # numpy scalars (numpy.bool_ is not a numbers.Real) and 0-d numpy arrays / torch tensors.
        return _as_reward_value(value.item())
    else:
        shown = repr(value)
        if len(shown) > 40:
            shown = shown[:40] + "..."
        raise _BadValue(f"a value of type {type(value).__name__} ({shown})")
    if not math.isfinite(number):
        raise _BadValue(f"a non-finite value ({number})")
    return number


def _is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns a coroutine, looking through partials and our wrappers."""
    while True:
        if inspect.iscoroutinefunction(fn):
            return True
        # A callable instance is async when its class's __call__ is.
        if not inspect.isroutine(fn) and inspect.iscoroutinefunction(type(fn).__call__):
            return True
        if isinstance(fn, functools.partial) or getattr(type(fn), "wraps_reward", False):
            fn = fn.func
        else:
            return False


class CheckedReward:
    """A reward function wrapped by :func:`checked_reward`; call it with keyword arguments only.

    Attributes:
        func: the wrapped reward.
        __name__: the metric name TRL logs the reward under.
        on_error: ``"raise"`` or ``"none"``, see :func:`checked_reward`.
        error_count: samples scored ``None`` because of an error, since the wrapper was made.
        required_columns: the dataset columns the wrapped reward needs.
    """

    wraps_reward = True  # `func` is the reward it calls

    def __init__(self, fn: Callable[..., Any], *, name: str, on_error: OnError) -> None:
        self.func = fn
        self.__name__ = name
        self.__qualname__ = name
        self.__doc__ = getattr(fn, "__doc__", None)
        # `inspect.signature(wrapper)` follows this, so it reports the wrapped reward's parameters.
        self.__wrapped__ = fn
        self.on_error = on_error
        self.error_count = 0
        self.required_columns = frozenset(reward_required_columns(fn))
        self._warned = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__name__!r}, on_error={self.on_error!r})"

    def __call__(self, **kwargs: Any) -> list[float | None]:
        kwargs = with_response_prefix(kwargs)
        completions = self._completions(kwargs)
        try:
            output = self.func(**kwargs)
        except Exception as exc:
            return self._isolate(kwargs, completions, exc)
        return self._check(output, completions)

    # -- shared by the sync and async wrappers -------------------------------------------------

    def _completions(self, kwargs: dict[str, Any]) -> Sequence[Any]:
        completions = kwargs.get("completions")
        if not isinstance(completions, Sequence) or isinstance(completions, str):
            raise RewardContractError(
                f"reward {self.__name__!r} must be called with keyword argument `completions`, a "
                f"list; got {type(completions).__name__}"
            )
        return completions

    def _check(
        self, output: Any, completions: Sequence[Any], *, rerun_index: int | None = None
    ) -> list[float | None]:
        """Validate one return value; ``rerun_index`` is the sample re-run alone, if any."""
        offset = rerun_index or 0
        items = _as_list(output)
        if items is None:
            raise RewardContractError(
                f"reward {self.__name__!r} returned {type(output).__name__}; expected a list with one "
                f"float or None per completion"
            )
        if len(items) != len(completions):
            where = "" if rerun_index is None else f" (re-run on sample {rerun_index} alone)"
            raise RewardContractError(
                f"reward {self.__name__!r} returned {len(items)} values for {len(completions)} "
                f"completions{where}; expected exactly one per completion"
            )
        scores: list[float | None] = []
        for index, item in enumerate(items):
            try:
                scores.append(_as_reward_value(item))
            except _BadValue as problem:
                message = (
                    f"reward {self.__name__!r} returned {problem} for sample {offset + index}: "
                    f"{_preview(completions[index])}; each item must be a finite number or None"
                )
                if self.on_error == "raise":
                    raise RewardContractError(message) from None
                self._record_errors(1, message)
                scores.append(None)
        return scores

    def _sample_kwargs(self, kwargs: dict[str, Any], index: int, size: int) -> dict[str, Any]:
        # Per-sample arguments (prompts, completions, completion_ids, dataset columns) are lists of
        # the batch's length; anything else (trainer_state, log_metric, ...) is passed unchanged.
        return {
            key: [value[index]] if isinstance(value, list | tuple) and len(value) == size else value
            for key, value in kwargs.items()
        }

    def _exception_message(self, exc: BaseException, index: int, completion: Any) -> str:
        return (
            f"reward {self.__name__!r} raised {type(exc).__name__}: {exc} on sample {index}: "
            f"{_preview(completion)}"
        )

    def _record_errors(self, count: int, message: str) -> None:
        self.error_count += count
        with _pending_lock:
            _pending_errors[self.__name__] += count
        if not self._warned:
            self._warned = True
            logger.warning(
                "%s; that sample scores None (on_error='none'). Later errors of this reward are "
                "counted in rewards/%s/errors and logged at debug level.",
                message,
                self.__name__,
            )
        else:
            logger.debug(message)

    def _after_isolation(
        self, exc: Exception, size: int, scores: list[float | None], errors_before: int
    ) -> list[float | None]:
        """Finish a one-by-one re-run in which no sample raised in "raise" mode, or any in "none"."""
        if self.on_error == "raise":
            raise RewardContractError(
                f"reward {self.__name__!r} raised {type(exc).__name__}: {exc} on a batch of "
                f"{size} completions, but on none of them when re-run one at a time"
            ) from exc
        if self.error_count == errors_before:
            logger.warning(
                "reward %r raised %s: %s on the whole batch but on no single sample; using the "
                "per-sample scores",
                self.__name__,
                type(exc).__name__,
                exc,
            )
        return scores

    # -- sync isolation ---------------------------------------------------------------------------

    def _isolate(
        self, kwargs: dict[str, Any], completions: Sequence[Any], exc: Exception
    ) -> list[float | None]:
        """Re-run a batch that raised sample by sample, to name (raise) or skip (none) the culprits."""
        size, errors_before = len(completions), self.error_count
        scores: list[float | None] = []
        for index in range(size):
            try:
                output = self.func(**self._sample_kwargs(kwargs, index, size))
            except Exception as sample_exc:
                message = self._exception_message(sample_exc, index, completions[index])
                if self.on_error == "raise":
                    raise RewardContractError(message) from sample_exc
                self._record_errors(1, message)
                scores.append(None)
                continue
            if self.on_error == "raise":
                continue  # only looking for the sample that raises
            scores.extend(self._check(output, completions[index : index + 1], rerun_index=index))
        return self._after_isolation(exc, size, scores, errors_before)


class AsyncCheckedReward(CheckedReward):
    """:class:`CheckedReward` for an ``async`` reward; TRL awaits it on its event-loop thread."""

    async def __call__(self, **kwargs: Any) -> list[float | None]:  # type: ignore[override]
        kwargs = with_response_prefix(kwargs)
        completions = self._completions(kwargs)
        try:
            output = await self.func(**kwargs)
        except Exception as exc:
            return await self._isolate_async(kwargs, completions, exc)
        return self._check(output, completions)

    async def _isolate_async(
        self, kwargs: dict[str, Any], completions: Sequence[Any], exc: Exception
    ) -> list[float | None]:
        size, errors_before = len(completions), self.error_count
        scores: list[float | None] = []
        for index in range(size):
            try:
                pending: Awaitable[Any] = self.func(**self._sample_kwargs(kwargs, index, size))
                output = await pending
            except Exception as sample_exc:
                message = self._exception_message(sample_exc, index, completions[index])
                if self.on_error == "raise":
                    raise RewardContractError(message) from sample_exc
                self._record_errors(1, message)
                scores.append(None)
                continue
            if self.on_error == "raise":
                continue
            scores.extend(self._check(output, completions[index : index + 1], rerun_index=index))
        return self._after_isolation(exc, size, scores, errors_before)


def checked_reward(
    fn: Callable[..., Any], *, name: str | None = None, on_error: OnError = "raise"
) -> CheckedReward:
    """Wrap a reward so that every call is checked against TRL's contract.

    The wrapper has ``__name__ == name`` (default: ``fn.__name__``), which TRL uses as the metric
    name. Each call must return a list or tuple (or a 1-D numpy array / torch tensor) with one item
    per completion, each an int, float, bool (read as 1.0 / 0.0), numpy/torch scalar or None; the
    wrapper returns it as a list of ``float | None``. NaN and infinities are errors.

    ``on_error="raise"``: any violation, or an exception from ``fn``, raises
    :class:`RewardContractError` naming the reward, the problem and the sample (for an exception,
    the batch is re-run one sample at a time to find the first sample that raises).

    ``on_error="none"``: a batch that raises is re-run one sample at a time; samples that raise, and
    items that are not finite numbers, score None and are counted in ``wrapper.error_count`` and
    :func:`pop_error_counts`; the first is logged as a warning. A return value of the wrong length
    or type is still raised, since no sample can be blamed for it. Re-running costs one call per
    sample, only for batches that raised.

    An ``async`` reward gives an async wrapper, so TRL still runs it concurrently.
    """
    if on_error not in ("raise", "none"):
        raise ValueError(f"on_error must be 'raise' or 'none', got {on_error!r}")
    if isinstance(fn, CheckedReward):
        fn = fn.func
    if name is None:
        name = getattr(fn, "__name__", None) or type(fn).__name__
    wrapper_type = AsyncCheckedReward if _is_async(fn) else CheckedReward
    return wrapper_type(fn, name=name, on_error=on_error)
