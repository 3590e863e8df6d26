"""Final-answer rewards for math word problems with a numeric answer (GSM8K style).

``numeric_answer`` compares the model's final number with the dataset's ``answer`` column;
``numeric_answer_format`` rewards ending the answer with ``#### <number>``. ``extract_final_number``
is the shared extraction rule, reused by evaluation so that training and evaluation agree.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from typing import Any

from rewards.contract import completion_text
from rewards.qa import answer_part
from rewards.registry import register_reward

# A number as models write it: optional sign, optional "$", digits with optional thousands commas
# and decimals (or a bare ".5"), optional "%". The sign counts only when it does not follow a word
# character or ")", so that "5-3" reads as 5 and 3 rather than 5 and -3.
_NUMBER = r"(?:(?<![\w)])[-+\u2212])?\$?(?:\d[\d,]*(?:\.\d+)?|\.\d+)%?"
_NUMBER_RE = re.compile(_NUMBER)
_ANSWER_IS_RE = re.compile(r"answer\s+is|answer\s*:", re.IGNORECASE)
_FORMAT_RE = re.compile(r"####[ \t]*" + _NUMBER + r"\s*\Z")
_BOXED = "\\boxed{"


def _clean_number(raw: str) -> str:
    """Drop the decorations a number may carry: commas, "$", "%", "+", a trailing "."."""
    text = raw.replace(",", "").replace("$", "").replace("%", "").replace("\u2212", "-")
    text = text.removeprefix("+")
    return text.removesuffix(".")


def _first_number(text: str) -> str | None:
    match = _NUMBER_RE.search(text)
    return _clean_number(match.group()) if match else None


def _boxed_contents(text: str) -> str | None:
    """The content of the last ``\\boxed{...}``, braces matched; None if there is none."""
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, begin = 1, start + len(_BOXED)
    for position in range(begin, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:position]
    return text[begin:]  # unclosed: the model was cut off; read what it wrote


def extract_final_number(text: str) -> str | None:
    """Return the final numeric answer in ``text``, cleaned, or None if it has no number.

    Only the text before a stated confidence is read (:func:`rewards.qa.answer_part`), so the 90 of
    ``"42\\nConfidence: 90%"`` is never the answer. Then the first rule that finds a number wins:

    1. the first number after the last ``####`` (GSM8K's answer marker);
    2. the first number inside the last ``\\boxed{...}``;
    3. the first number after the last "answer is" or "answer:" (any case), on the same line;
    4. the last number anywhere in the text.

    The number is returned without thousands commas, "$", "%", a leading "+" or a trailing
    period: ``"The answer is $1,234."`` gives ``"1234"``. Fractions such as ``\\frac{1}{2}`` and
    scientific notation are not understood.
    """
    text = answer_part(text)
    marker = text.rfind("####")
    if marker >= 0 and (number := _first_number(text[marker + 4 :])) is not None:
        return number
    boxed = _boxed_contents(text)
    if boxed is not None and (number := _first_number(boxed)) is not None:
        return number
    answer_matches = list(_ANSWER_IS_RE.finditer(text))
    if answer_matches:
        rest_of_line = text[answer_matches[-1].end() :].split("\n", 1)[0]
        if (number := _first_number(rest_of_line)) is not None:
            return number
    numbers_found = _NUMBER_RE.findall(text)
    return _clean_number(numbers_found[-1]) if numbers_found else None


def _to_float(number: str | None) -> float | None:
    if number is None:
        return None
    try:
        value = float(number)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _gold_number(gold: Any) -> float | None:
    """The reference answer as a float; None when the row has no usable answer."""
    if gold is None or isinstance(gold, bool):
        return None
    if isinstance(gold, numbers.Real):
        value = float(gold)
        return value if math.isfinite(value) else None
    # A string: "1,234", "12.50", or a whole GSM8K solution ending in "#### 72".
    return _to_float(extract_final_number(str(gold)))


@register_reward("numeric_answer")
def numeric_answer(
    completions: Sequence[Any], answer: Sequence[Any], *, rel_tol: float = 1e-6, **kwargs: Any
) -> list[float | None]:
    """1.0 if the completion's final number equals the ``answer`` column, else 0.0.

    Both sides go through :func:`extract_final_number` (a numeric ``answer`` is used as is) and are
    compared as floats with relative tolerance ``rel_tol``, so "12.50" equals "12.5" and "1,234"
    equals "1234". A completion with no number scores 0.0; a row whose answer has no number
    scores None (the reward does not apply).
    """
    scores: list[float | None] = []
    for completion, gold in zip(completions, answer, strict=True):
        expected = _gold_number(gold)
        if expected is None:
            scores.append(None)
            continue
        predicted = _to_float(extract_final_number(completion_text(completion)))
        matched = predicted is not None and math.isclose(predicted, expected, rel_tol=rel_tol)
        scores.append(1.0 if matched else 0.0)
    return scores


@register_reward("numeric_answer_format")
def numeric_answer_format(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """1.0 if the completion ends with ``#### <number>`` (trailing whitespace allowed), else 0.0.

    A shaping signal that teaches the answer marker ``numeric_answer`` reads first. Only spaces
    or tabs may separate ``####`` from the number, and nothing but whitespace may follow it.
    """
    return [1.0 if _FORMAT_RE.search(completion_text(completion)) else 0.0 for completion in completions]
