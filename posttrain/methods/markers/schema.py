"""The marker schema and its text form ("Treasure Hunt: Real-time Targeting of the Long Tail using Training-Time
Markers", Cohere, 2025).

A marker list is plain text, ``<MARKER_LIST> <domain> Code </domain> <length_tokens> 199 </length_tokens>
</MARKER_LIST>``, with the markers in the schema's order. This module renders a list, parses one back from a
model's output (a truncated or malformed list is read as far as it goes, never raised on), splits a completion
into its marker list and the answer a user sees, and draws the prompt-side dropout: all markers dropped for a
``dataset_rate`` share of rows, each remaining one dropped with ``sample_rate``, from a seed, the epoch and the
row, so each epoch draws afresh and a resumed run draws what the uninterrupted one did.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

OPEN = "<MARKER_LIST>"
CLOSE = "</MARKER_LIST>"


@dataclass(frozen=True)
class MarkerCategory:
    """One marker: its tag name, what it says, and where its value comes from."""

    name: str
    description: str
    source: str  # "measure", "metadata", "scorer", "tagger" or "column"


#: The paper's taxonomy (13 markers), in the order they are written.
CATEGORIES: tuple[MarkerCategory, ...] = (
    MarkerCategory("domain", "Subject area of the request (Math, Code, General knowledge, ...)", "metadata"),
    MarkerCategory("task", "What the request asks for (Math reasoning, Code generation, ...)", "metadata"),
    MarkerCategory(
        "format", "Shape of the answer (Worked solution, Code block, Short answer, Label)", "metadata"
    ),
    MarkerCategory("source", "The dataset the example comes from", "metadata"),
    MarkerCategory("language", "Natural language of the answer (ISO 639-1 code)", "measure"),
    MarkerCategory("code_language", "Programming language of the code in the answer", "measure"),
    MarkerCategory(
        "style", "Register of the answer (e.g. formal, casual), from a tagger or a column", "tagger"
    ),
    MarkerCategory("length_tokens", "Answer length in tokens of the model's tokenizer", "measure"),
    MarkerCategory("length_sentences", "Answer length in sentences", "measure"),
    MarkerCategory("length_paragraphs", "Answer length in paragraphs", "measure"),
    MarkerCategory(
        "length_bucket", "Answer length in tokens, bucketed (tiny, short, medium, long)", "measure"
    ),
    MarkerCategory("quality", "Score a reward function or model gives the (prompt, answer) pair", "scorer"),
    MarkerCategory(
        "quality_bucket", "Quartile of that score over the training set (1 lowest, 4 highest)", "scorer"
    ),
)
CATEGORY_NAMES = tuple(c.name for c in CATEGORIES)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_MARKER = re.compile(r"<([A-Za-z][A-Za-z0-9_]*)>(.*?)</\1>", re.DOTALL)


class MarkerSchema:
    """The markers a run writes, in order: the paper's categories first, then the recipe's own (a user extends
    the schema with any name; its values come from a dataset column of that name)."""

    def __init__(self, extra: Iterable[str] = ()):
        extra = list(extra)
        for name in extra:
            if not _NAME.match(name) or name == "MARKER_LIST":
                raise ValueError(
                    f"Marker name {name!r} is not a tag name: use letters, digits and '_', starting with a letter."
                )
        dupes = [n for n in extra if n in CATEGORY_NAMES or extra.count(n) > 1]
        if dupes:
            raise ValueError(
                f"Marker name(s) {sorted(set(dupes))} given twice (the paper's are {CATEGORY_NAMES})."
            )
        self.names: tuple[str, ...] = CATEGORY_NAMES + tuple(extra)

    def order(self, markers: Mapping[str, Any]) -> dict[str, str]:
        """``markers`` in schema order, values as clean text; names outside the schema go last, sorted."""
        known = [n for n in self.names if n in markers]
        unknown = sorted(n for n in markers if n not in self.names)
        return {n: clean_value(markers[n]) for n in known + unknown if markers[n] is not None}


def clean_value(value: Any) -> str:
    """A marker value as one line of text without angle brackets (they would end the tag)."""
    text = str(value).replace("<", " ").replace(">", " ")
    return " ".join(text.split())


def render_markers(markers: Mapping[str, Any], schema: MarkerSchema | None = None) -> str:
    """The text form of a marker list; ``""`` for no markers."""
    ordered = (schema or DEFAULT_SCHEMA).order(markers)
    ordered = {k: v for k, v in ordered.items() if v}
    if not ordered:
        return ""
    body = " ".join(f"<{name}> {value} </{name}>" for name, value in ordered.items())
    return f"{OPEN} {body} {CLOSE}"


@dataclass(frozen=True)
class ParsedOutput:
    """A model's output split into the marker list it generated and the answer a user sees.

    ``status``: "ok" (a closed list), "none" (no list: the whole output is the answer), "truncated" (the list never
    closes; markers read up to the cut) or "malformed" (a closed list with text that is no marker).

    A model writes its list only before the answer; a small or briefly trained one may go on after the answer with
    another list (and repeat it to the token limit). The answer ends where such a later list opens: it is never
    part of what the user sees, and ``repeated`` says it was cut off."""

    markers: dict[str, str]
    answer: str
    status: str
    marker_text: str
    repeated: bool = False


def parse_output(text: str) -> ParsedOutput:
    """Split ``text`` (a completion) into its leading marker list and the answer, cut where a later list opens.
    Never raises."""
    parsed = _parse_leading(text)
    later = parsed.answer.find(OPEN)
    if later < 0:
        return parsed
    return replace(parsed, answer=parsed.answer[:later].strip(), repeated=True)


def _parse_leading(text: str) -> ParsedOutput:
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    stripped = text.lstrip()
    if not stripped.startswith(OPEN):
        # A cut before the opening tag was complete ("<MARKER_") is a truncated list too.
        if stripped and OPEN.startswith(stripped):
            return ParsedOutput({}, "", "truncated", stripped)
        return ParsedOutput({}, text.strip(), "none", "")
    end = stripped.find(CLOSE)
    if end >= 0:
        inside = stripped[len(OPEN) : end]
        markers = _read_markers(inside)
        leftover = _MARKER.sub("", inside).strip()
        return ParsedOutput(
            markers,
            stripped[end + len(CLOSE) :].strip(),
            "malformed" if leftover else "ok",
            stripped[: end + len(CLOSE)],
        )
    body = stripped[len(OPEN) :]
    matches = list(_MARKER.finditer(body))
    cut = matches[-1].end() if matches else 0
    rest = body[cut:].strip()
    # After the last whole marker: a half-written tag (or nothing) means the output was cut inside the list; plain
    # text means the model dropped the closing tag and went on to answer.
    if not matches or not rest or rest.startswith("<") or CLOSE.startswith(rest):
        return ParsedOutput(_read_markers(body), "", "truncated", stripped)
    return ParsedOutput(_read_markers(body[:cut]), rest, "truncated", OPEN + body[:cut])


def _read_markers(inside: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in _MARKER.finditer(inside):
        found.setdefault(match.group(1), " ".join(match.group(2).split()))
    return found


def strip_markers(text: str) -> str:
    """The answer a user sees: ``text`` without its leading marker list."""
    return parse_output(text).answer


def append_to_prompt(prompt: Any, marker_text: str) -> Any:
    """``prompt`` (chat messages or a string) with ``marker_text`` after the last user turn's text; unchanged
    when there is no marker text."""
    if not marker_text:
        return prompt
    if isinstance(prompt, str):
        return f"{prompt}\n{marker_text}"
    messages = [dict(m) for m in prompt]
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts: add a text part
                message["content"] = [*content, {"type": "text", "text": "\n" + marker_text}]
            else:
                message["content"] = f"{content}\n{marker_text}"
            return messages
    raise ValueError("The prompt has no user turn to append the marker list to.")


def row_rng(seed: int, epoch: int, key: Any) -> random.Random:
    """A generator for one row in one epoch: the same three give the same draws in any process or order."""
    digest = hashlib.blake2b(f"{seed}\x1f{epoch}\x1f{key}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


def prompt_markers(
    markers: Mapping[str, Any],
    *,
    dataset_rate: float,
    sample_rate: float,
    seed: int,
    epoch: int,
    key: Any,
    schema: MarkerSchema | None = None,
) -> dict[str, str]:
    """The markers the prompt shows this epoch: none with probability ``dataset_rate``, otherwise each one
    kept with probability ``1 - sample_rate``. The completion always carries them all."""
    ordered = (schema or DEFAULT_SCHEMA).order(markers)
    rng = row_rng(seed, epoch, key)
    if rng.random() < dataset_rate:
        return {}
    return {name: value for name, value in ordered.items() if rng.random() >= sample_rate}


DEFAULT_SCHEMA = MarkerSchema()
