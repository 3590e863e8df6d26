"""ProX's program language and its executor ("Programming Every Example", Zhou et al., 2024).

A refining model writes, for each document, a short program of function calls; this module reads it with a strict
parser (a hand-written scanner: nothing is ever evaluated or executed as Python) and applies it:

- document level: ``keep_doc()`` or ``drop_doc()``;
- chunk level, on the document's numbered lines (``[000] ...``, 0-based and global in the document):
  ``remove_lines(line_start=i, line_end=j)`` (inclusive), ``normalize(source_str="...", target_str="...")`` and
  ``keep_chunk()``.

The paper's rules: a program with two or more malformed calls is ignored and its chunk kept as it is; every
normalisation applies before any line removal; a document left with at most 5% of its words, or at most 10 words,
is dropped. A call is malformed when it does not scan, names an unknown function, has missing, extra or mistyped
arguments, or asks for something impossible (lines outside its chunk, a range that ends before it starts, a
normalisation that is empty, spans lines, or would blow the document up). Every input gives a result or a
:class:`ProgramError`, in time linear in its length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

#: A program with at least this many malformed calls is ignored (the paper's rule).
MALFORMED_LIMIT = 2
#: A refined document keeping at most this share of its words, or at most ``MIN_WORDS`` words, is dropped.
MIN_WORD_SHARE = 0.05
MIN_WORDS = 10
#: Longest ``source_str`` / ``target_str`` a normalisation may name, in characters.
MAX_STRING = 1_000
#: Longest program text read, in characters: a refiner's program is a few lines; anything longer is not one.
MAX_PROGRAM = 100_000

DOC_FUNCTIONS = {"keep_doc": (), "drop_doc": ()}
CHUNK_FUNCTIONS = {
    "remove_lines": (("line_start", int), ("line_end", int)),
    "normalize": (("source_str", str), ("target_str", str)),
    "keep_chunk": (),
}


class ProgramError(ValueError):
    """A program that cannot be applied at all (not a string, or far too long). Malformed calls inside a
    program are not errors: they are counted, and the paper's rule decides."""


@dataclass(frozen=True)
class Call:
    """One well-formed call: the function's name and its arguments by parameter name."""

    name: str
    args: tuple[tuple[str, int | str], ...] = ()

    def arg(self, name: str) -> int | str:
        return dict(self.args)[name]

    def __str__(self) -> str:
        rendered = ", ".join(f"{k}={_quote(v) if isinstance(v, str) else v}" for k, v in self.args)
        return f"{self.name}({rendered})"


@dataclass(frozen=True)
class Program:
    """A parsed program: its well-formed calls in order, and why each malformed one was refused."""

    calls: tuple[Call, ...]
    malformed: tuple[str, ...] = ()

    @property
    def ignored(self) -> bool:
        return len(self.malformed) >= MALFORMED_LIMIT


# ----------------------------------------------------------------------------------------------- scanning

_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_INT = re.compile(r"[+-]?\d+")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


class _Malformed(Exception):
    """Raised inside the scanner for one call; caught per call."""


class _Scanner:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def skip_blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        self.skip_blanks()
        if self.peek() != char:
            found = repr(self.peek()) if self.peek() else "the end of the line"
            raise _Malformed(f"expected {char!r}, found {found}")
        self.pos += 1

    def name(self) -> str:
        self.skip_blanks()
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise _Malformed("expected a function or parameter name")
        self.pos = match.end()
        return match.group()

    def value(self) -> int | str:
        self.skip_blanks()
        char = self.peek()
        if char in ('"', "'"):
            return self.string(char)
        match = _INT.match(self.text, self.pos)
        if match is None:
            raise _Malformed("expected an integer or a quoted string")
        if len(match.group().lstrip("+-")) > 9:
            raise _Malformed(f"integer {match.group()[:20]} is too large to be a line number")
        self.pos = match.end()
        return int(match.group())

    def string(self, quote: str) -> str:
        self.pos += 1
        chars: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == quote:
                return "".join(chars)
            if char == "\n":
                break
            if char == "\\":
                escaped = self.peek()
                if escaped not in _ESCAPES:
                    raise _Malformed(f"unknown escape \\{escaped}")
                chars.append(_ESCAPES[escaped])
                self.pos += 1
            else:
                chars.append(char)
            if len(chars) > MAX_STRING:
                raise _Malformed(f"string longer than {MAX_STRING} characters")
        raise _Malformed("unterminated string")


def _scan_call(line: str) -> tuple[str, list[int | str], list[tuple[str, int | str]]]:
    """``name(positional..., keyword=value...)`` on one line, with nothing after it but blanks."""
    scanner = _Scanner(line)
    name = scanner.name()
    scanner.expect("(")
    positional: list[int | str] = []
    keywords: list[tuple[str, int | str]] = []
    scanner.skip_blanks()
    if scanner.peek() == ")":
        scanner.pos += 1
    else:
        while True:
            scanner.skip_blanks()
            start = scanner.pos
            match = _NAME.match(line, start)
            after = match.end() if match else start
            while after < len(line) and line[after] in " \t":
                after += 1
            if match and after < len(line) and line[after] == "=":
                scanner.pos = after + 1
                keywords.append((match.group(), scanner.value()))
            elif keywords:
                raise _Malformed("a positional argument after a keyword argument")
            else:
                positional.append(scanner.value())
            scanner.skip_blanks()
            if scanner.peek() == ",":
                scanner.pos += 1
                scanner.skip_blanks()
                if scanner.peek() == ")":
                    scanner.pos += 1
                    break
                continue
            scanner.expect(")")
            break
    scanner.skip_blanks()
    if scanner.pos != len(line):
        raise _Malformed(f"unexpected text after the call: {line[scanner.pos : scanner.pos + 30]!r}")
    return name, positional, keywords


def _bind(
    name: str,
    positional: list[int | str],
    keywords: list[tuple[str, int | str]],
    functions: dict[str, tuple[tuple[str, type], ...]],
) -> Call:
    if name not in functions:
        raise _Malformed(f"unknown function {name!r} (expected one of {', '.join(functions)})")
    params = functions[name]
    if len(positional) > len(params):
        raise _Malformed(f"{name}() takes {len(params)} arguments, got {len(positional)} positional")
    bound = dict(zip((p for p, _ in params), positional, strict=False))
    for key, value in keywords:
        if key in bound:
            raise _Malformed(f"{name}() got {key!r} twice")
        bound[key] = value
    expected = dict(params)
    unknown = sorted(set(bound) - set(expected))
    missing = [p for p, _ in params if p not in bound]
    if unknown or missing:
        raise _Malformed(f"{name}() arguments: unknown {unknown}, missing {missing}")
    for key, kind in params:
        if not isinstance(bound[key], kind):
            raise _Malformed(f"{name}() argument {key} must be {kind.__name__}, got {bound[key]!r}")
    return Call(name, tuple((key, bound[key]) for key, _ in params))


def parse_program(text: str, functions: dict[str, tuple[tuple[str, type], ...]]) -> Program:
    """The calls of ``text``, one per line (blank lines and a surrounding code fence are skipped), bound to
    ``functions`` (:data:`DOC_FUNCTIONS` or :data:`CHUNK_FUNCTIONS`); each line that is not a well-formed call
    counts as malformed, with the reason."""
    if not isinstance(text, str):
        raise ProgramError(f"a program is text, got {type(text).__name__}")
    if len(text) > MAX_PROGRAM:
        raise ProgramError(
            f"a program of {len(text)} characters is longer than any refiner writes ({MAX_PROGRAM})"
        )
    calls: list[Call] = []
    malformed: list[str] = []
    for number, raw in enumerate(text.split("\n")):
        line = raw.strip()
        if not line or line.startswith("```"):
            continue
        try:
            calls.append(_bind(*_scan_call(line), functions))
        except _Malformed as err:
            malformed.append(f"line {number}: {err}")
    return Program(tuple(calls), tuple(malformed))


_QUOTED = {char: "\\" + code for code, char in _ESCAPES.items() if code != "'"}


def _quote(value: str) -> str:
    return '"' + "".join(_QUOTED.get(char, char) for char in value) + '"'


def render_program(calls: Sequence[Call]) -> str:
    """The program text of ``calls``, one per line: what a teacher writes and the parser reads back."""
    return "\n".join(str(call) for call in calls)


# ---------------------------------------------------------------------------------------------- execution


def number_lines(lines: Sequence[str], start: int = 0) -> str:
    """``lines`` as the refiner sees them: ``[000] text``, numbered from ``start``, at least three digits."""
    width = max(3, len(str(start + len(lines) - 1)))
    return "\n".join(f"[{start + i:0{width}d}] {line}" for i, line in enumerate(lines))


def chunk_lines(lines: Sequence[str], count_tokens: Callable[[str], int], budget: int = 1_500) -> list[range]:
    """Consecutive line ranges whose numbered text holds at most ``budget`` tokens each (a single line longer
    than the budget is a chunk of its own). Every line is in exactly one chunk, in order."""
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    chunks: list[range] = []
    start, used = 0, 0
    for index, line in enumerate(lines):
        cost = count_tokens(number_lines([line], start=index)) + 1  # + the newline between lines
        if index > start and used + cost > budget:
            chunks.append(range(start, index))
            start, used = index, 0
        used += cost
    if start < len(lines):
        chunks.append(range(start, len(lines)))
    return chunks


@dataclass
class Refined:
    """A document after its programs ran: the text (None when dropped) and what was executed, for metadata."""

    text: str | None
    doc_program: str
    chunk_programs: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    ignored_chunks: int = 0
    removed_lines: int = 0
    reason: str = ""
    words_before: int = 0
    words_after: int = 0

    @property
    def kept(self) -> bool:
        return self.text is not None

    def metadata(self) -> dict:
        return {
            "kept": self.kept,
            "reason": self.reason,
            "doc_program": self.doc_program,
            "chunk_programs": self.chunk_programs,
            "executed": self.executed,
            "malformed": self.malformed,
            "ignored_chunks": self.ignored_chunks,
            "removed_lines": self.removed_lines,
            "words_before": self.words_before,
            "words_after": self.words_after,
        }


def doc_decision(program_text: str) -> tuple[bool, Program]:
    """Whether a document-level program keeps its document. ``drop_doc()`` drops; ``keep_doc()``, an empty
    program and an ignored (malformed) one keep, as an ignored chunk program keeps its chunk. With both calls,
    the first wins."""
    program = parse_program(program_text, DOC_FUNCTIONS)
    if program.ignored or not program.calls:
        return True, program
    return program.calls[0].name == "keep_doc", program


def _word_count(text: str) -> int:
    return len(text.split())


def apply_programs(
    text: str, doc_program: str, chunks: Sequence[range], chunk_programs: Sequence[str]
) -> Refined:
    """Run a document's programs on ``text``: the document-level decision, then each chunk's program on its own
    lines (normalisations first, then removals), then the word-count rule. ``chunks`` are the line ranges the
    chunk programs were written for (:func:`chunk_lines` over ``text.split("\\n")``)."""
    if not isinstance(text, str):
        raise ProgramError(f"a document is text, got {type(text).__name__}")
    if len(chunks) != len(chunk_programs):
        raise ProgramError(f"{len(chunks)} chunks but {len(chunk_programs)} chunk programs")
    lines = text.split("\n")
    covered = [i for chunk in chunks for i in chunk]
    if covered != list(range(len(lines))) and chunks:
        raise ProgramError(f"the chunks must cover lines 0..{len(lines) - 1} in order, once each")
    keep, program = doc_decision(doc_program)
    result = Refined(
        text=None,
        doc_program=doc_program,
        chunk_programs=list(chunk_programs),
        words_before=_word_count(text),
    )
    result.malformed += [f"document: {reason}" for reason in program.malformed]
    if not keep:
        result.executed.append("drop_doc()")
        result.reason = "drop_doc"
        return result
    result.executed.append("keep_doc()")
    growth_left = max(MAX_STRING, len(text))  # normalisations may add at most this many characters in all
    removed: set[int] = set()
    for number, (chunk, source) in enumerate(zip(chunks, chunk_programs, strict=True)):
        program = parse_program(source, CHUNK_FUNCTIONS)
        refused = list(program.malformed)
        accepted: list[Call] = []
        for call in program.calls:
            reason = _check_chunk_call(call, chunk)
            if reason:
                refused.append(f"{call}: {reason}")
            else:
                accepted.append(call)
        result.malformed += [f"chunk {number}: {reason}" for reason in refused]
        if len(refused) >= MALFORMED_LIMIT:
            result.ignored_chunks += 1
            continue
        for call in accepted:
            if call.name != "normalize":
                continue
            source_str, target_str = str(call.arg("source_str")), str(call.arg("target_str"))
            hits = sum(lines[i].count(source_str) for i in chunk)
            growth = hits * (len(target_str) - len(source_str))
            if growth > growth_left:
                result.malformed.append(f"chunk {number}: {call}: would add {growth} characters")
                continue
            growth_left -= max(growth, 0)
            for i in chunk:
                lines[i] = lines[i].replace(source_str, target_str)
            result.executed.append(str(call))
        for call in accepted:
            if call.name == "remove_lines":
                start, end = int(call.arg("line_start")), int(call.arg("line_end"))
                removed.update(range(start, end + 1))
                result.executed.append(str(call))
    result.removed_lines = len(removed)
    refined = "\n".join(line for i, line in enumerate(lines) if i not in removed)
    before, after = result.words_before, _word_count(refined)
    if after <= MIN_WORDS or after <= MIN_WORD_SHARE * before:
        result.reason = f"{after} of {before} words left"
        return result
    result.text, result.words_after = refined, after
    return result


def _check_chunk_call(call: Call, chunk: range) -> str:
    """Why a well-formed chunk call cannot apply to ``chunk`` ('' when it can)."""
    if call.name == "remove_lines":
        start, end = int(call.arg("line_start")), int(call.arg("line_end"))
        if end < start:
            return f"line_end {end} is before line_start {start}"
        if not chunk or start < chunk.start or end >= chunk.stop:
            last = chunk.stop - 1
            return f"lines {start}-{end} are outside this chunk ({chunk.start}-{last})"
    if call.name == "normalize":
        source_str = str(call.arg("source_str"))
        if not source_str:
            return "source_str is empty"
        if "\n" in source_str or "\n" in str(call.arg("target_str")):
            return "normalize works within a line; the strings may not hold a newline"
    return ""
