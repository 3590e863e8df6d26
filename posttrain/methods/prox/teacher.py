"""ProX's programmers: whatever writes a document's programs. The rule teacher expresses classic pre-training
filters (Gopher-style document quality rules, C4-style line rules) as ProX programs, so that heuristics and a
trained refiner go through one executor; gold-derived programs come from a page's known clean text; the model
refiner asks a language model through the shared generation service.

A programmer has two methods, both batched: ``doc_programs(texts)`` gives one document-level program per
document, and ``chunk_programs(chunks)`` one chunk-level program per chunk of numbered lines
(:func:`posttrain.methods.prox.program.number_lines`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from posttrain.methods.prox.program import Call, render_program

_NUMBERED = re.compile(r"^\[(\d+)\] ?(.*)$")
_WORD = re.compile(r"\S+")
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "-", "*", "·", "●", "▪", "–")
ELLIPSES = ("...", "…")
TERMINAL = (".", "!", "?", '"', "”", "'", "’", ":", ")")
BOILERPLATE = ("javascript", "cookie", "privacy policy", "terms of use", "terms of service", "lorem ipsum")


class Programmer(Protocol):
    def doc_programs(self, texts: Sequence[str]) -> list[str]: ...

    def chunk_programs(self, chunks: Sequence[str]) -> list[str]: ...


def numbered_lines(chunk: str) -> list[tuple[int, str]]:
    """``(number, text)`` of each line of a numbered chunk; a line without a number is skipped."""
    found = []
    for line in chunk.split("\n"):
        match = _NUMBERED.match(line)
        if match:
            found.append((int(match.group(1)), match.group(2)))
    return found


def _ranges(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted line numbers as inclusive runs of consecutive numbers."""
    runs: list[tuple[int, int]] = []
    for number in sorted(numbers):
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs


def removal_program(numbers: Sequence[int]) -> str:
    """The chunk program removing ``numbers`` (merged into runs), or ``keep_chunk()`` when there are none."""
    if not numbers:
        return "keep_chunk()"
    calls = [Call("remove_lines", (("line_start", a), ("line_end", b))) for a, b in _ranges(numbers)]
    return render_program(calls)


@dataclass(frozen=True)
class RuleTeacher:
    """Gopher-style document rules and C4-style line rules, written as ProX programs.

    A document is dropped when any rule fires: fewer than ``min_words`` words; mean word length outside 3-10
    characters; more than 0.1 hash marks or ellipses per word; more than 90% of its lines bulleted or 30% ending
    in an ellipsis; under 80% of its words holding a letter; fewer than two English stop words. In a kept
    document a line is removed when it mentions boilerplate (javascript, cookies, privacy policy, terms of use,
    lorem ipsum), or has fewer than ``min_line_words`` words or no terminal punctuation; blank lines stay.
    """

    min_words: int = 50
    min_line_words: int = 3
    reasons: dict[str, int] = field(default_factory=dict, compare=False)

    def doc_reason(self, text: str) -> str:
        """Which rule drops ``text`` ('' when none does)."""
        words = _WORD.findall(text)
        if len(words) < self.min_words:
            return f"fewer than {self.min_words} words"
        mean_length = sum(len(w) for w in words) / len(words)
        if not 3 <= mean_length <= 10:
            return "mean word length outside 3-10"
        symbols = text.count("#") + sum(text.count(e) for e in ELLIPSES)
        if symbols / len(words) > 0.1:
            return "too many hash marks or ellipses"
        lines = [line.strip() for line in text.split("\n") if line.strip()]
        if lines and sum(line.startswith(BULLETS) for line in lines) > 0.9 * len(lines):
            return "mostly bullet lines"
        if lines and sum(line.endswith(ELLIPSES) for line in lines) > 0.3 * len(lines):
            return "many lines end in an ellipsis"
        if sum(any(unicodedata.category(c).startswith("L") for c in w) for w in words) < 0.8 * len(words):
            return "under 80% of words hold a letter"
        if len({w.lower().strip(".,;:!?\"'") for w in words} & STOP_WORDS) < 2:
            return "fewer than two stop words"
        return ""

    def doc_programs(self, texts: Sequence[str]) -> list[str]:
        programs = []
        for text in texts:
            reason = self.doc_reason(text)
            if reason:
                self.reasons[reason] = self.reasons.get(reason, 0) + 1
            programs.append("drop_doc()" if reason else "keep_doc()")
        return programs

    def line_removed(self, line: str) -> bool:
        stripped = line.strip()
        if not stripped:
            return False
        lowered = stripped.lower()
        if any(marker in lowered for marker in BOILERPLATE):
            return True
        return len(_WORD.findall(stripped)) < self.min_line_words or not stripped.endswith(TERMINAL)

    def chunk_programs(self, chunks: Sequence[str]) -> list[str]:
        return [
            removal_program([n for n, text in numbered_lines(chunk) if self.line_removed(text)])
            for chunk in chunks
        ]


def _normal(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


def gold_removals(lines: Sequence[str], clean_text: str) -> list[int]:
    """Lines of an extracted page that its clean text does not hold: the line-level truth. A line of three words or
    more is kept when its whitespace-normalised text occurs in the normalised clean text; a shorter one (a page
    number, "Share") only when it is a whole line of the clean text, since a digit or a word occurs in any
    article. Blank lines are neither kept nor removed."""
    clean = _normal(clean_text)
    clean_lines = {_normal(line) for line in clean_text.split("\n")}
    removed = []
    for index, line in enumerate(lines):
        text = _normal(line)
        if not text:
            continue
        kept = text in clean if len(text.split()) >= 3 else text in clean_lines
        if not kept:
            removed.append(index)
    return removed


#: What the refiner is asked, at training and at inference alike.
DOC_REQUEST = (
    "Should this document be kept for language-model pre-training? Answer keep_doc() or drop_doc().\n\n{text}"
)
CHUNK_REQUEST = (
    "Clean these numbered lines of a document. Write one call per line: remove_lines(line_start=i, line_end=j) "
    "for lines that are not content, normalize(source_str=..., target_str=...) for broken strings, or "
    "keep_chunk() when nothing needs cleaning.\n\n{text}"
)


def doc_request(text: str, max_chars: int = 2_000) -> str:
    """The document-level request: the document's first ``max_chars`` characters."""
    return DOC_REQUEST.format(text=text[:max_chars])


def chunk_request(numbered: str) -> str:
    """The chunk-level request for a chunk of numbered lines."""
    return CHUNK_REQUEST.format(text=numbered)
