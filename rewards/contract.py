"""The reward-function contract of TRL's GRPOTrainer, and a wrapper that enforces it.

TRL (1.16) calls every reward as ``fn(prompts=..., completions=..., completion_ids=..., **columns,
trainer_state=..., log_extra=..., log_metric=...)`` and expects back one ``float | None`` per
completion, ``None`` meaning "this reward does not apply". :func:`checked_reward` wraps a reward so
that an exception, a broken return value (wrong type or length, NaN, infinity) or a call that overruns
its time limit fails with a message naming the reward, the sample and the training step, or, with
``on_error="none"``, scores only the failing samples ``None`` and counts them so that the trainer can
log ``rewards/<name>/errors`` (see :func:`pop_error_counts`).

A recipe's ``response_prefix`` (the start of the answer, written into the prompt so that the model
continues from it) reaches rewards as the dataset column ``response_prefix``; the wrapper puts it back in
front of each completion, so every reward scores the answer whole.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import numbers
import queue
import sys
import sysconfig
import threading
import time
import traceback
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import FrameType
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
_STDLIB = sysconfig.get_paths()["stdlib"]

#: How many timed-out calls of one reward may still be running in background threads before the wrapper
#: stops training even with ``on_error="none"``: a thread cannot be stopped, each keeps what it holds, and
#: one that spins takes CPU time from training. A hang that recurs every step is a bug to fix, not to skip.
MAX_STRANDED_CALLS = 4

# Errors counted since the last `pop_error_counts`, keyed by reward name. A lock because TRL may
# run async rewards on a daemon event-loop thread while the main thread logs.
_pending_errors: Counter[str] = Counter()
_pending_lock = threading.Lock()


class RewardContractError(RuntimeError):
    """A reward function raised, or returned something TRL cannot use."""


class RewardTimeoutError(RewardContractError):
    """A reward call took longer than its time limit."""


class _BadValue(Exception):
    """One returned item is not a finite number or None; the text says what it is."""


class _TimedOut(Exception):
    """A reward call overran its deadline and was abandoned; ``where`` and ``stack`` say what it was doing."""

    def __init__(self, where: str, stack: str) -> None:
        super().__init__(where)
        self.where = where
        self.stack = stack
        self.still_running = (
            0  # abandoned calls of the reward whose threads have not ended, this one included
        )


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


def _returned_items(output: Any, size: int) -> tuple[list[Any], str | None]:
    """The items of a reward's return value, and what is wrong with its shape for ``size`` completions, if
    anything."""
    items = _as_list(output)
    if items is None:
        return [], f"returned {type(output).__name__} instead of a list"
    if len(items) != size:
        return items, f"returned {len(items)} values for {size} completions"
    return items, None


def _step_text(kwargs: Mapping[str, Any]) -> str:
    """`` at step N`` from the ``trainer_state`` TRL passes: the training step being computed, numbered from 1 as
    the trainer's log and the completion log number it (``global_step + 1``); nothing without a trainer state."""
    step = getattr(kwargs.get("trainer_state"), "global_step", None)
    return "" if step is None else f" at step {step + 1}"


def _call_frames(frame: FrameType | None) -> list[traceback.FrameSummary]:
    """The stack of a suspended call, from the reward down, without the frames of the thread that runs it."""
    if frame is None:
        return []
    frames = traceback.extract_stack(frame)
    for index, summary in enumerate(frames):
        if summary.filename == __file__ and summary.name == "_serve":
            return frames[index + 1 :]
    return frames


def _location(frames: list[traceback.FrameSummary]) -> str:
    """Where a suspended call is: its innermost line outside the standard library (where it waits is rarely
    the interesting part), else its innermost line."""
    if not frames:
        return "it had just returned"
    outside = [f for f in frames if not f.filename.startswith(_STDLIB)]
    last = (outside or frames)[-1]
    return f"it was at {last.filename}:{last.lineno} in {last.name}"


def _caller_thread_state() -> Callable[[], None]:
    """What a reward thread must take over from the thread that starts it, as a function to run in it.

    The current CUDA device is per thread: without this, a reward that makes tensors on "cuda" would put them
    on device 0 in every process of a multi-GPU run.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return lambda: None
    device = torch.cuda.current_device()
    return lambda: torch.cuda.set_device(device)


class _RewardThread:
    """A daemon thread that runs the calls of one synchronous reward, so that the caller can stop waiting.

    Python cannot stop a thread: a call that overruns is abandoned (the wrapper stops waiting and starts a new
    thread for the next call) and runs on until it returns, then its thread ends. A daemon thread never keeps
    the process from exiting.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[..., Any], dict[str, Any], Future] | None] = (
            queue.SimpleQueue()
        )
        self.thread = threading.Thread(
            target=self._serve, args=(_caller_thread_state(),), name=f"reward-{name}", daemon=True
        )
        self.thread.start()

    def submit(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Future:
        future: Future = Future()
        self._calls.put((fn, kwargs, future))
        return future

    def overrun(self) -> _TimedOut:
        """What its call is doing now, to report that it overran."""
        frames = _call_frames(sys._current_frames().get(self.thread.ident))
        return _TimedOut(_location(frames), "".join(traceback.format_list(frames)))

    def close(self) -> None:
        """End the thread once its current call, if any, returns."""
        self._calls.put(None)

    def _serve(self, take_over_state: Callable[[], None]) -> None:
        take_over_state()
        while (call := self._calls.get()) is not None:
            fn, kwargs, future = call
            try:
                result = fn(**kwargs)
            except BaseException as exc:  # handed to the caller, which decides
                future.set_exception(exc)
            else:
                future.set_result(result)
            del call, fn, kwargs, future  # release the batch while idle


class _BatchFault:
    """A whole call went wrong (it raised, or returned the wrong type or length): no sample is blamed yet."""

    def __init__(self, problem: str, cause: BaseException | None = None) -> None:
        self.problem = problem
        self.cause = cause

    @classmethod
    def raised(cls, exc: BaseException, size: int) -> _BatchFault:
        return cls(f"raised {type(exc).__name__}: {exc} on a batch of {size} completions", exc)


class CheckedReward:
    """A reward function wrapped by :func:`checked_reward`; call it with keyword arguments only.

    Attributes:
        func: the wrapped reward.
        __name__: the metric name TRL logs the reward under.
        on_error: ``"raise"`` or ``"none"``, see :func:`checked_reward`.
        timeout: seconds one call may take, or None for no limit.
        error_count: samples scored ``None`` because of an error or a timeout, since the wrapper was made.
        required_columns: the dataset columns the wrapped reward needs.
    """

    wraps_reward = True  # `func` is the reward it calls

    def __init__(
        self, fn: Callable[..., Any], *, name: str, on_error: OnError, timeout: float | None = None
    ) -> None:
        self.func = fn
        self.__name__ = name
        self.__qualname__ = name
        self.__doc__ = getattr(fn, "__doc__", None)
        # `inspect.signature(wrapper)` follows this, so it reports the wrapped reward's parameters.
        self.__wrapped__ = fn
        self.on_error = on_error
        self.timeout = timeout
        self.error_count = 0
        self.required_columns = frozenset(reward_required_columns(fn))
        self._warned = False
        self._thread: _RewardThread | None = None
        self._stranded: list[_RewardThread] = []  # threads of timed-out calls, possibly still running

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.__name__!r}, on_error={self.on_error!r}, timeout={self.timeout!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        # Threads cannot be copied: a copy (deepcopy, pickle) starts its own when it first needs one.
        return {**self.__dict__, "_thread": None, "_stranded": []}

    def __call__(self, **kwargs: Any) -> list[float | None]:
        kwargs = with_response_prefix(kwargs)
        completions = self._completions(kwargs)
        try:
            output = self._run(kwargs, self._deadline())
        except _TimedOut as overrun:
            return self._batch_timed_out(kwargs, len(completions), overrun)
        except Exception as exc:
            return self._isolate(kwargs, completions, _BatchFault.raised(exc, len(completions)))
        items, problem = _returned_items(output, len(completions))
        if problem is not None:
            return self._isolate(kwargs, completions, _BatchFault(problem))
        return self._scores(items, completions, kwargs)

    def _run(self, kwargs: dict[str, Any], deadline: float | None) -> Any:
        """Call the reward; past ``deadline`` (``time.monotonic()``), abandon the call and raise _TimedOut."""
        if deadline is None:
            return self.func(**kwargs)
        if self._thread is None:
            self._thread = _RewardThread(self.__name__)
            weakref.finalize(self, self._thread.close)
        thread = self._thread
        future = thread.submit(self.func, kwargs)
        try:
            return future.result(timeout=max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            if future.done():  # returned just now, or raised a TimeoutError of its own
                return future.result()
        # Abandon the call: its thread runs on until the call returns, then ends.
        overrun = thread.overrun()
        thread.close()
        self._thread = None
        self._stranded = [t for t in self._stranded if t.thread.is_alive()] + [thread]
        overrun.still_running = len(self._stranded)
        raise overrun

    # -- shared by the sync and async wrappers -------------------------------------------------

    def _completions(self, kwargs: dict[str, Any]) -> Sequence[Any]:
        completions = kwargs.get("completions")
        if not isinstance(completions, Sequence) or isinstance(completions, str):
            raise RewardContractError(
                f"reward {self.__name__!r} must be called with keyword argument `completions`, a "
                f"list; got {type(completions).__name__}"
            )
        return completions

    def _deadline(self) -> float | None:
        return None if self.timeout is None else time.monotonic() + self.timeout

    def _limit(self) -> str:
        return f"reward_timeout {self.timeout:g} s"

    def _scores(
        self, items: list[Any], completions: Sequence[Any], kwargs: Mapping[str, Any], offset: int = 0
    ) -> list[float | None]:
        """Validate each returned item; ``offset`` is the index of ``completions[0]`` in the batch."""
        scores: list[float | None] = []
        for index, item in enumerate(items):
            try:
                scores.append(_as_reward_value(item))
            except _BadValue as problem:
                self._fault(
                    f"reward {self.__name__!r} returned {problem} for sample {offset + index}"
                    f"{_step_text(kwargs)}: {_preview(completions[index])}; each item must be a finite "
                    f"number or None"
                )
                scores.append(None)
        return scores

    def _fault(self, message: str, cause: BaseException | None = None) -> None:
        """One sample failed: raise (on_error="raise") or count it, to be scored None."""
        if self.on_error == "raise":
            raise RewardContractError(message) from cause
        self._record_errors(1, message)

    def _sample_kwargs(self, kwargs: dict[str, Any], index: int, size: int) -> dict[str, Any]:
        # Per-sample arguments (prompts, completions, completion_ids, dataset columns) are lists of
        # the batch's length; anything else (trainer_state, log_metric, ...) is passed unchanged.
        return {
            key: [value[index]] if isinstance(value, list | tuple) and len(value) == size else value
            for key, value in kwargs.items()
        }

    def _sample_raised(
        self, exc: Exception, index: int, completions: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        self._fault(
            f"reward {self.__name__!r} raised {type(exc).__name__}: {exc} on sample {index}{_step_text(kwargs)}: "
            f"{_preview(completions[index])}",
            cause=exc,
        )

    def _sample_score(
        self, output: Any, index: int, completions: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> float | None:
        """The score of sample ``index`` from its re-run alone."""
        items, problem = _returned_items(output, 1)
        if problem is not None:
            self._fault(
                f"reward {self.__name__!r} {problem} when re-run on sample {index} alone{_step_text(kwargs)}: "
                f"{_preview(completions[index])}; it must return one float or None per completion"
            )
            return None
        return self._scores(items, completions[index : index + 1], kwargs, offset=index)[0]

    def _record_errors(self, count: int, message: str, *, warn: bool = False) -> None:
        self.error_count += count
        with _pending_lock:
            _pending_errors[self.__name__] += count
        if warn:
            logger.warning(message)
        elif not self._warned:
            self._warned = True
            logger.warning(
                "%s; that sample scores None (on_error='none'). Later errors of this reward are "
                "counted in rewards/%s/errors and logged at debug level.",
                message,
                self.__name__,
            )
        else:
            logger.debug(message)

    def _batch_timed_out(
        self, kwargs: Mapping[str, Any], size: int, overrun: _TimedOut
    ) -> list[float | None]:
        """A call overran: stop (raise), or score its samples None without re-running them, which could take
        as long again (none)."""
        self._stop_if_piling_up(kwargs, overrun)
        message = (
            f"reward {self.__name__!r} overran its time limit ({self._limit()}) on a batch of {size} "
            f"completions{_step_text(kwargs)} ({overrun.where})"
        )
        if self.on_error == "raise":
            logger.error("the stack of the call that overran:\n%s", overrun.stack)
            raise RewardTimeoutError(
                f"{message}. Raise reward_timeout if the reward is only slow, or set reward_errors: none to "
                f"score the samples of such calls None."
            ) from None
        self._record_errors(
            size, f"{message}; its {size} samples score None. The call's stack:\n{overrun.stack}", warn=True
        )
        return [None] * size

    def _stop_if_piling_up(self, kwargs: Mapping[str, Any], overrun: _TimedOut) -> None:
        if overrun.still_running < MAX_STRANDED_CALLS:
            return
        logger.error("the stack of the call that overran:\n%s", overrun.stack)
        raise RewardTimeoutError(
            f"reward {self.__name__!r} overran its time limit ({self._limit()}){_step_text(kwargs)}, and "
            f"{overrun.still_running} of its timed-out calls are still running in background threads, which "
            f"cannot be stopped ({overrun.where}); stopping rather than let more pile up. Fix the hang, or "
            f"raise reward_timeout if the reward is only slow."
        )

    def _rerun_timed_out(
        self,
        kwargs: Mapping[str, Any],
        completions: Sequence[Any],
        fault: _BatchFault,
        index: int,
        overrun: _TimedOut,
    ) -> list[float | None]:
        """The one-by-one re-run of a failed batch overran the batch's time limit at sample ``index``."""
        self._stop_if_piling_up(kwargs, overrun)
        size = len(completions)
        message = (
            f"reward {self.__name__!r} {fault.problem}{_step_text(kwargs)}, and re-running it one sample at a time "
            f"overran its time limit ({self._limit()}) at sample {index}: {_preview(completions[index])} "
            f"({overrun.where})"
        )
        if self.on_error == "raise":
            logger.error("the stack of the call that overran:\n%s", overrun.stack)
            raise RewardTimeoutError(message) from fault.cause
        self._record_errors(
            size - index,
            f"{message}; samples {index} to {size - 1} score None. The call's stack:\n{overrun.stack}",
            warn=True,
        )
        return [None] * (size - index)

    def _after_isolation(
        self, kwargs: Mapping[str, Any], fault: _BatchFault, scores: list[float | None], errors_before: int
    ) -> list[float | None]:
        """Finish a one-by-one re-run in which no sample failed in "raise" mode, or any in "none"."""
        message = f"reward {self.__name__!r} {fault.problem}{_step_text(kwargs)}, but on none of them when re-run one at a time"
        if self.on_error == "raise":
            raise RewardContractError(message) from fault.cause
        if self.error_count == errors_before:
            logger.warning("%s; using the per-sample scores", message)
        return scores

    # -- sync isolation ---------------------------------------------------------------------------

    def _isolate(
        self, kwargs: dict[str, Any], completions: Sequence[Any], fault: _BatchFault
    ) -> list[float | None]:
        """Re-run a failed batch sample by sample, to name (raise) or skip (none) the culprits.

        The re-run does the batch's work again, so it gets the batch's time limit, in all.
        """
        size, errors_before, deadline = len(completions), self.error_count, self._deadline()
        scores: list[float | None] = []
        for index in range(size):
            try:
                output = self._run(self._sample_kwargs(kwargs, index, size), deadline)
            except _TimedOut as overrun:
                return scores + self._rerun_timed_out(kwargs, completions, fault, index, overrun)
            except Exception as exc:
                self._sample_raised(exc, index, completions, kwargs)
                scores.append(None)
                continue
            scores.append(self._sample_score(output, index, completions, kwargs))
        return self._after_isolation(kwargs, fault, scores, errors_before)


class AsyncCheckedReward(CheckedReward):
    """:class:`CheckedReward` for an ``async`` reward; TRL awaits it on its event-loop thread.

    A call that overruns its time limit is cancelled (it stops at its next ``await``); no thread is left
    behind. A reward that blocks the event loop without awaiting cannot be interrupted by it.
    """

    async def __call__(self, **kwargs: Any) -> list[float | None]:  # type: ignore[override]
        kwargs = with_response_prefix(kwargs)
        completions = self._completions(kwargs)
        try:
            output = await self._run_async(kwargs, self._deadline())
        except _TimedOut as overrun:
            return self._batch_timed_out(kwargs, len(completions), overrun)
        except Exception as exc:
            return await self._isolate_async(kwargs, completions, _BatchFault.raised(exc, len(completions)))
        items, problem = _returned_items(output, len(completions))
        if problem is not None:
            return await self._isolate_async(kwargs, completions, _BatchFault(problem))
        return self._scores(items, completions, kwargs)

    async def _run_async(self, kwargs: dict[str, Any], deadline: float | None) -> Any:
        if deadline is None:
            return await self.func(**kwargs)
        task = asyncio.ensure_future(self.func(**kwargs))
        done, _ = await asyncio.wait({task}, timeout=max(deadline - time.monotonic(), 0.0))
        if done:
            return task.result()
        # A suspended coroutine gives its own frame only: the line of the reward that awaits.
        frames = [summary for frame in task.get_stack() for summary in traceback.extract_stack(frame)[-1:]]
        task.cancel()
        # A cancelled call that raises on its way out has nobody left to read its error.
        task.add_done_callback(lambda finished: finished.cancelled() or finished.exception())
        raise _TimedOut(f"cancelled; {_location(frames)}", "".join(traceback.format_list(frames)))

    async def _isolate_async(
        self, kwargs: dict[str, Any], completions: Sequence[Any], fault: _BatchFault
    ) -> list[float | None]:
        size, errors_before, deadline = len(completions), self.error_count, self._deadline()
        scores: list[float | None] = []
        for index in range(size):
            try:
                output = await self._run_async(self._sample_kwargs(kwargs, index, size), deadline)
            except _TimedOut as overrun:
                return scores + self._rerun_timed_out(kwargs, completions, fault, index, overrun)
            except Exception as exc:
                self._sample_raised(exc, index, completions, kwargs)
                scores.append(None)
                continue
            scores.append(self._sample_score(output, index, completions, kwargs))
        return self._after_isolation(kwargs, fault, scores, errors_before)


def checked_reward(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    on_error: OnError = "raise",
    timeout: float | None = None,
) -> CheckedReward:
    """Wrap a reward so that every call is checked against TRL's contract.

    The wrapper has ``__name__ == name`` (default: ``fn.__name__``), which TRL uses as the metric
    name. Each call must return a list or tuple (or a 1-D numpy array / torch tensor) with one item
    per completion, each an int, float, bool (read as 1.0 / 0.0), numpy/torch scalar or None; the
    wrapper returns it as a list of ``float | None``. NaN and infinities are errors.

    A call that raises, or returns the wrong type or length, is re-run one sample at a time to find
    the samples at fault (this costs one call per sample, only for batches that failed). Every error
    message names the reward, the sample (its index in the batch and the start of its text) and, when
    TRL passes ``trainer_state``, the training step (numbered from 1, as in the trainer's log).

    ``on_error="raise"``: the first failing sample raises :class:`RewardContractError`; a batch that
    fails as a whole but on no sample alone raises too.

    ``on_error="none"``: failing samples score None and are counted in ``wrapper.error_count`` and
    :func:`pop_error_counts`; the first is logged as a warning. A batch that fails as a whole but on no
    sample alone gets the per-sample scores, with a warning.

    ``timeout``: seconds one call may take (None: no limit). The re-run of a failed batch gets as long
    again, in all. A synchronous reward then runs in a thread of its own (one per reward, reused across
    calls); a call that overruns is abandoned, since Python cannot stop a thread: it runs on in the
    background until it returns. An async reward's call is cancelled instead. An overrun raises
    :class:`RewardTimeoutError` (``"raise"``) or scores the call's samples None, counted like errors,
    without re-running them (``"none"``); once :data:`MAX_STRANDED_CALLS` abandoned calls of one reward
    are still running, it raises in either mode.

    An ``async`` reward gives an async wrapper, so TRL still runs it concurrently.
    """
    if on_error not in ("raise", "none"):
        raise ValueError(f"on_error must be 'raise' or 'none', got {on_error!r}")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, numbers.Real)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    if isinstance(fn, CheckedReward):
        fn = fn.func
    if name is None:
        name = getattr(fn, "__name__", None) or type(fn).__name__
    wrapper_type = AsyncCheckedReward if _is_async(fn) else CheckedReward
    return wrapper_type(fn, name=name, on_error=on_error, timeout=None if timeout is None else float(timeout))


# -- Calling a reward outside training ------------------------------------------------------------------------


@dataclass
class ScoringState:
    """What a reward receives as ``trainer_state`` outside training (the held-out check, ``posttrain eval``,
    ``posttrain validate``): the fields of transformers' ``TrainerState`` that a reward shaping by progress
    reads. ``global_step`` is the step of the model being scored (0: before training)."""

    global_step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    is_world_process_zero: bool = True


def _not_logged(*args: Any, **kwargs: Any) -> None:
    """``log_extra`` and ``log_metric`` outside training: accepted, and not recorded anywhere."""


def is_conversation(prompt: Any) -> bool:
    """Whether a prompt is a list of chat messages (TRL's conversational format)."""
    return (
        isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], Mapping) and "role" in prompt[0]
    )


def score_completions(
    fn: Callable[..., Any],
    prompts: Sequence[Any],
    completions: Sequence[Any],
    columns: Mapping[str, Sequence[Any]] | None = None,
    *,
    step: int = 0,
    tokenizer: Any = None,
) -> list[float | None]:
    """Call a reward exactly as TRL's GRPOTrainer does in training, on completions made elsewhere.

    One contract everywhere: completions of conversational prompts become ``[{"role": "assistant", "content":
    text}]``, the reward gets ``trainer_state`` (a :class:`ScoringState` at ``step``), ``log_extra`` and
    ``log_metric``, ``completion_ids`` (when a ``tokenizer`` is given; else None) and the dataset ``columns``; an
    ``async def`` reward is awaited.
    """
    texts = [completion_text(c) for c in completions]
    if prompts and is_conversation(prompts[0]):
        completions = [
            [{"role": "assistant", "content": t}] if isinstance(c, str) else c
            for c, t in zip(completions, texts, strict=True)
        ]
    ids = (
        [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        if tokenizer is not None
        else None
    )
    output = fn(
        prompts=list(prompts),
        completions=list(completions),
        completion_ids=ids,
        **dict(columns or {}),
        trainer_state=ScoringState(global_step=step),
        log_extra=_not_logged,
        log_metric=_not_logged,
    )
    if inspect.isawaitable(output):
        output = asyncio.run(_awaited(output))
    return list(output)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


#: Made-up answers `posttrain validate` scores each reward on: empty, a refusal, a number with a stated
#: confidence, and a tagged answer. A reward must return a score or None for each, not fail.
PROBE_COMPLETIONS = (
    "",
    "I don't know.",
    "The answer is 42.\nConfidence: 90%",
    "<think>Short.</think>\n<answer>yes</answer>",
)


def probe_reward(fn: Callable[..., Any], rows: Sequence[Mapping[str, Any]]) -> None:
    """Score ``PROBE_COMPLETIONS`` for each of ``rows`` (real dataset rows, formatted) with ``fn`` as training
    would, so that a reward that raises or breaks TRL's contract fails before a model loads. Rewards marked
    ``probe = False`` (they load a model of their own) are skipped."""
    target = fn.func if isinstance(fn, CheckedReward) else fn
    # Through partials and recipe-bound wrappers (BoundReward) to the reward that says whether it may be probed.
    while isinstance(target, functools.partial) or getattr(target, "wraps_reward", False):
        target = target.func
    if getattr(target, "probe", True) is False or not rows:
        return
    prompts = [row["prompt"] for row in rows for _ in PROBE_COMPLETIONS]
    columns = {k: [row[k] for row in rows for _ in PROBE_COMPLETIONS] for k in rows[0] if k != "prompt"}
    try:
        score_completions(fn, prompts, list(PROBE_COMPLETIONS) * len(rows), columns)
    except RewardContractError as err:
        raise type(err)(
            f"{err}\n(found by scoring {len(rows)} training rows with made-up answers before training: the reward "
            "must return a score or None for any answer)"
        ) from err
