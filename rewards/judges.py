"""Judges: plug-in functions that mark a model's answer correct or not, for methods that build their training data
from the model's own answers (ConfTuner labels each answer for its confidence; S3FT keeps the answers a judge
accepts).

A judge is a reward with a verdict: the same plain function ``(completions, **dataset_columns, **kwargs) ->
list``, named the same ways (a registered name, ``package.module:function`` or ``path/to/file.py:function``),
called as training calls a reward, and returning for each answer 1 (or True) for correct, 0 (or False) for wrong,
or None where it cannot judge (a row without a gold answer). Any registered reward that scores 0 or 1 is a judge:
``qa_contains`` (the gold answer or an alias, normalised, in the answer), ``numeric_answer`` (math),
``cls_contains`` (classification), ``code_unit_tests`` (code run against the row's tests in the sandbox).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewards.contract import CheckedReward, completion_text, reward_required_columns, score_completions
from rewards.registry import load_reward_functions

#: What judges an answer when a recipe names no judge: the normalised gold answer or one of its aliases occurs
#: in the answer as whole words (short-answer QA).
DEFAULT_JUDGE = "qa_contains"


class JudgeError(ValueError):
    """A judge that returned something other than a verdict."""


@dataclass(frozen=True)
class Judge:
    """A loaded judge; call it with the prompts, the answers and the rows (their columns) they answer."""

    name: str
    fn: CheckedReward

    @property
    def columns(self) -> set[str]:
        """The dataset columns the judge reads (its required parameters)."""
        return reward_required_columns(self.fn)

    def __call__(
        self, prompts: Sequence[Any], answers: Sequence[Any], rows: Sequence[Mapping[str, Any]]
    ) -> list[bool | None]:
        """One verdict per answer: True (correct), False (wrong) or None (the judge does not apply)."""
        if not (len(prompts) == len(answers) == len(rows)):
            raise ValueError(
                f"judge {self.name!r}: {len(prompts)} prompts, {len(answers)} answers and {len(rows)} rows."
            )
        if not rows:
            return []
        names = [k for k in rows[0] if k not in ("prompt", "completion")]
        columns = {k: [row.get(k) for row in rows] for k in names}
        scores = score_completions(self.fn, prompts, answers, columns)
        verdicts: list[bool | None] = []
        for index, score in enumerate(scores):
            if score is not None and score not in (0.0, 1.0):
                raise JudgeError(
                    f"judge {self.name!r} scored answer {index} ({completion_text(answers[index])[:60]!r}) {score}: "
                    "a judge returns 1 (correct), 0 (wrong) or None. A graded reward is no judge; wrap it in a "
                    "function that says which scores count as correct."
                )
            verdicts.append(None if score is None else score == 1.0)
        return verdicts


def load_judge(spec: str, *, base_dir: str | Path | None = None) -> Judge:
    """The judge a spec names (a registered name, ``module:function`` or ``file.py:function``, a relative file
    looked up under ``base_dir`` first); a bad spec raises a ``ValueError`` that says what to change."""
    (fn,), _ = load_reward_functions([spec], base_dir=base_dir)
    return Judge(name=fn.__name__, fn=fn)
