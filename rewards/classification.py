"""Rule-based rewards of CLS-RL and No-Thinking-CLS-RL ("CLS-RL: Image Classification with
Rule-Based Reinforcement Learning", later "Think or Not Think").

The thinking variant sums ``cls_format`` (``<think>...</think><answer>...</answer>``) and
``cls_accuracy`` (the answer equals the gold class); the no-thinking variant uses ``cls_equality``
alone (the whole completion is the class name). ``cls_contains`` is the paper's lenient evaluation
metric, kept apart from the training rewards; ``cls_tags`` is partial format credit for models too
small to hit the format by chance. The gold class is read from the ``label`` column, the candidate
list (when a reward needs it) from ``classes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from rewards.contract import completion_text
from rewards.registry import register_reward

_FORMAT_RE = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def normalize_class_name(name: str) -> str:
    """Normalise a class name for ``cls_equality``: as strict as a useful equality can be.

    Strips surrounding whitespace, then drops ONE trailing period, then ignores case and treats
    ``_`` as a space: ``" Golden_Retriever."`` becomes ``"golden retriever"``. Nothing else is
    forgiven (no quotes, no inner-space collapsing, no second period), because the reward must
    push the model to emit the bare class name and nothing more.
    """
    text = name.strip().removesuffix(".")
    return text.casefold().replace("_", " ")


def _gold(label: Any) -> str | None:
    """The gold class as text; None for a row without one, where the rewards do not apply."""
    if label is None:
        return None
    text = str(label).strip()
    return text or None


def _answer_blocks(text: str) -> list[str]:
    return _ANSWER_RE.findall(text)


def _score_against_label(
    completions: Sequence[Any], label: Sequence[Any], judge: Callable[..., bool], *per_row: Sequence[Any]
) -> list[float | None]:
    """1.0/0.0 per completion from ``judge(text, gold, *row_values)``; None where the row has no gold label.

    ``per_row`` are further columns, one value per completion, passed to ``judge`` after the gold label.
    """
    scores: list[float | None] = []
    for completion, gold_label, *values in zip(completions, label, *per_row, strict=True):
        gold = _gold(gold_label)
        scores.append(None if gold is None else float(judge(completion_text(completion), gold, *values)))
    return scores


@register_reward("cls_format")
def cls_format(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """1.0 if the whole stripped completion is ``<think>...</think>`` then ``<answer>...</answer>``.

    The paper's pattern, matched against the entire completion (nothing before or after), with
    ``.`` matching newlines. Whitespace may separate the two blocks.
    """
    return [
        1.0 if _FORMAT_RE.fullmatch(completion_text(completion).strip()) else 0.0
        for completion in completions
    ]


@register_reward("cls_accuracy")
def cls_accuracy(completions: Sequence[Any], label: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """1.0 if the ``<answer>`` content, stripped, equals the gold class ignoring case, else 0.0.

    Exactly one ``<answer>...</answer>`` block must be present: a completion without one, or with
    several (hedging between classes), scores 0.0. No other normalisation (``_`` is not a space
    here), as in the paper; give the gold class in the form the prompt lists it.
    """

    def judge(text: str, gold: str) -> bool:
        blocks = _answer_blocks(text)
        return len(blocks) == 1 and blocks[0].strip().casefold() == gold.casefold()

    return _score_against_label(completions, label, judge)


@register_reward("cls_equality")
def cls_equality(completions: Sequence[Any], label: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """1.0 only if the entire completion is the gold class name, else 0.0 (No-Thinking-CLS-RL).

    Both sides go through :func:`normalize_class_name` (surrounding whitespace, one trailing
    period, case, ``_`` vs space); any other text, tags or reasoning included, scores 0.0.
    """
    return _score_against_label(
        completions, label, lambda text, gold: normalize_class_name(text) == normalize_class_name(gold)
    )


def _lenient(text: str) -> str:
    return " ".join(text.casefold().replace("_", " ").split())


def _candidate_list(value: Any) -> list[str]:
    if value is None:
        return []
    names = value.split(",") if isinstance(value, str) else list(value)
    return [_lenient(str(name)) for name in names if str(name).strip()]


def mentioned_classes(answer: str, candidates: Sequence[str]) -> set[str]:
    """The candidate class names ``answer`` mentions, each as a whole mention, nested names counted once.

    Names and answer are compared ignoring case, repeated whitespace and ``_`` vs space. A mention is bounded
    by the text's ends or by characters that are not letters or digits, so "cat" is not mentioned in
    "wildcat" or "cats". Names are looked for longest first and each mention found is consumed: in "not
    sarcastic" the candidates "not sarcastic" and "sarcastic" find one mention, of "not sarcastic".
    """
    text = _lenient(answer)
    found = set()
    for name in sorted({_lenient(c) for c in candidates} - {""}, key=len, reverse=True):
        # A line break cannot occur in a normalised name, so no later name matches across a consumed one.
        text, hits = re.subn(rf"(?<!\w){re.escape(name)}(?!\w)", "\n", text)
        if hits:
            found.add(name)
    return found


@register_reward("cls_contains")
def cls_contains(
    completions: Sequence[Any], label: Sequence[Any], classes: Sequence[Any] | None = None, **kwargs: Any
) -> list[float | None]:
    """The paper's lenient evaluation metric: 1.0 if the answer names the gold class and no other candidate.

    The answer text is the content of the ``<answer>`` block, or the whole completion when it has none
    (no-thinking outputs); several ``<answer>`` blocks score 0.0. The classes it names are found by
    :func:`mentioned_classes` among the row's ``classes`` (the candidate list the prompt showed) and the gold:
    whole mentions, ignoring case, repeated whitespace and ``_`` vs space, longest names first. So with the
    classes "sarcastic" and "not sarcastic", "not sarcastic" names only the latter, and "wildcat" does not
    name "cat". Lenient about the words around the name, not about which name: report it as the paper's
    metric, beside the strict rewards.
    """
    candidates = [_candidate_list(c) for c in classes] if classes is not None else [[]] * len(completions)

    def judge(text: str, gold: str, names: list[str]) -> bool:
        blocks = _answer_blocks(text)
        if len(blocks) > 1:
            return False
        gold = _lenient(gold)
        return bool(gold) and mentioned_classes(blocks[0] if blocks else text, [*names, gold]) == {gold}

    return _score_against_label(completions, label, judge, candidates)


_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


@register_reward("cls_tags")
def cls_tags(completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """Partial format credit: a quarter for each of the four tags that occurs exactly once, in order.

    A shaping reward for models too small to ever produce the full ``cls_format`` pattern by chance:
    it is 1.0 for every completion ``cls_format`` accepts, and ranks the near misses below it.
    """
    scores: list[float | None] = []
    for completion in completions:
        text = completion_text(completion)
        score, position = 0.0, 0
        for tag in _TAGS:
            found = text.find(tag, position)
            if found < 0 or text.count(tag) != 1:
                continue
            score += 0.25
            position = found + len(tag)
        scores.append(score)
    return scores
