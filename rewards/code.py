"""Code rewards: run a completion's code against its row's unit tests in the sandbox (:mod:`posttrain.sandbox`).

For code tasks with unit tests in the HumanEval layout: a ``test`` column defining ``check(candidate)`` and an
``entry_point`` column naming the function to test. The program is the completion's code, then the tests, then
``check(<entry_point>)``; it passes only when it runs to its last line, so a completion that exits early
(``sys.exit(0)`` before the tests run) fails. The S3FT code judge runs the same program (:func:`run_unit_tests`).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from posttrain.sandbox import ExecutionResult, SandboxLimits, execute_program
from rewards.contract import completion_text
from rewards.registry import register_reward

__all__ = ["code_unit_tests", "extract_code", "run_unit_tests", "unit_test_program"]

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def extract_code(text: str) -> str:
    """The code of a completion: the body of its first fenced block (```python, ```py or a bare ```), or the
    whole text when it has none. An unclosed fence runs to the end (the model was cut off)."""
    match = _FENCE.search(text)
    return match.group(1) if match else text


def unit_test_program(code: str, test: str, entry_point: str | None, end_marker: str) -> str:
    """``code``, the tests, ``check(<entry_point>)`` (when there is an entry point), then a print of ``end_marker``."""
    call = f"check({entry_point})\n" if entry_point else ""
    return f"{code}\n\n{test}\n\n{call}print({end_marker!r})\n"


def run_unit_tests(
    code: str,
    test: str,
    entry_point: str | None = None,
    *,
    limits: SandboxLimits | None = None,
    isolation: str = "namespaces",
) -> ExecutionResult:
    """Run ``code`` against ``test`` in the sandbox; ``passed`` means the tests ran to the end and held.

    A program that exits with status 0 without reaching the end of the tests (it called ``sys.exit(0)`` or
    ``os._exit(0)`` first) is ``failed``: the last line prints a random marker, which must end its output.
    The marker stops exits, not a program that goes looking for it among its own constants.
    """
    marker = f"posttrain-tests-done-{secrets.token_hex(8)}"
    result = execute_program(
        unit_test_program(code, test, entry_point, marker), limits=limits, isolation=isolation
    )
    if result.passed and not result.stdout.rstrip().endswith(marker):
        return replace(result, status="failed", reason="the program exited before its tests finished")
    return result


@register_reward("code_unit_tests")
def code_unit_tests(
    completions: Sequence[Any],
    test: Sequence[Any],
    entry_point: Sequence[Any] | None = None,
    prompts: Sequence[Any] | None = None,
    *,
    continue_prompt: bool = False,
    wall_time: float = 10.0,
    memory_mb: int = 1024,
    isolation: str = "namespaces",
    workers: int = 4,
    **kwargs: Any,
) -> list[float | None]:
    """1.0 if the completion's code passes its row's unit tests in the sandbox, else 0.0; None without tests.

    The code is the first fenced block of the completion, or the completion itself. With ``continue_prompt``
    (HumanEval's own format, for base models that continue a function's signature and docstring) the code is
    the prompt's text followed by the completion's. ``wall_time`` (seconds) and ``memory_mb`` (address space)
    limit each program; ``workers`` programs run at once. A sandbox that cannot start a program is an error,
    not a score: it raises (and ``isolation="rlimits"`` must be asked for where namespaces are missing).
    """
    if continue_prompt and prompts is None:
        raise ValueError("code_unit_tests: continue_prompt needs the prompts, and none were passed")
    limits = SandboxLimits(wall_time=wall_time, cpu_time=max(1, int(wall_time)), memory=memory_mb << 20)
    entry_points = entry_point if entry_point is not None else [None] * len(completions)
    jobs = []
    for index, (completion, tests, entry) in enumerate(zip(completions, test, entry_points, strict=True)):
        if not tests:
            continue
        text = completion_text(completion)
        if continue_prompt:
            if not isinstance(prompts[index], str):
                raise ValueError("code_unit_tests: continue_prompt needs prompts as plain text, not messages")
            code = prompts[index] + text
        else:
            code = extract_code(text)
        jobs.append((index, code, tests, entry))
    scores: list[float | None] = [None] * len(completions)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(jobs) or 1, os.cpu_count() or 1))) as pool:
        results = pool.map(lambda job: run_unit_tests(*job[1:], limits=limits, isolation=isolation), jobs)
        for (index, *_), result in zip(jobs, results, strict=True):
            if result.status == "error":
                raise RuntimeError(f"code_unit_tests: completion {index}: {result.reason}")
            logger.debug("completion %d: %s (%s)", index, result.status, result.reason)
            scores[index] = 1.0 if result.passed else 0.0
    return scores
