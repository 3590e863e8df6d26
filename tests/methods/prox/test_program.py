"""ProX's program language: the strict parser, the executor's rules, line numbering and chunking, and hostile
input (property-based: nothing runs code, loops, or raises anything but ProgramError)."""

from __future__ import annotations

import builtins
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posttrain.methods.prox.program import (
    CHUNK_FUNCTIONS,
    DOC_FUNCTIONS,
    MAX_PROGRAM,
    Call,
    ProgramError,
    apply_programs,
    chunk_lines,
    doc_decision,
    number_lines,
    parse_program,
    render_program,
)

WORDS = " ".join(f"word{i}" for i in range(20))  # 20 words a line
DOC = "\n".join(f"line {i} {WORDS}" for i in range(6))  # 6 lines, 132 words


def chunk(source: str) -> list[str]:
    return [c.name for c in parse_program(source, CHUNK_FUNCTIONS).calls]


def test_parser_reads_the_documented_forms():
    program = parse_program(
        "```\nremove_lines(line_start=0, line_end=3)\n  normalize(source_str='&amp;', target_str=\"&\")\n"
        "keep_chunk()\nremove_lines(4, line_end=5,)\n```",
        CHUNK_FUNCTIONS,
    )
    assert program.malformed == ()
    assert [str(c) for c in program.calls] == [
        "remove_lines(line_start=0, line_end=3)",
        'normalize(source_str="&amp;", target_str="&")',
        "keep_chunk()",
        "remove_lines(line_start=4, line_end=5)",
    ]


@pytest.mark.parametrize(
    "line, reason",
    [
        ("remove_lines(line_start=1)", "missing ['line_end']"),
        ("remove_lines(line_start=1, line_end=2, extra=3)", "unknown ['extra']"),
        ("remove_lines(line_start='1', line_end=2)", "must be int"),
        ("remove_lines(line_start=1, line_start=2)", "twice"),
        ("remove_lines(line_end=2, 1)", "positional argument after a keyword"),
        ("remove_lines(line_start=1, line_end=2); drop_doc()", "unexpected text after the call"),
        ("normalize(source_str='a, target_str='b')", "expected"),
        ("normalize(source_str='\\q', target_str='b')", "unknown escape"),
        ("os.system('ls')", "expected '('"),
        ("__import__('os')", "unknown function '__import__'"),
        ("drop_doc()", "unknown function 'drop_doc'"),
        ("remove_lines(line_start=99999999999, line_end=2)", "too large"),
        ("remove_lines(line_start=1.5, line_end=2)", "expected"),
    ],
)
def test_parser_refuses_malformed_calls_with_the_reason(line, reason):
    program = parse_program(line, CHUNK_FUNCTIONS)
    assert program.calls == ()
    assert len(program.malformed) == 1 and reason in program.malformed[0], program.malformed


def test_document_decision():
    assert doc_decision("keep_doc()")[0] is True
    assert doc_decision("drop_doc()")[0] is False
    assert doc_decision("")[0] is True
    # Two malformed calls: the program is ignored and the document kept, even beside a drop_doc().
    assert doc_decision("drop_doc()\nremove_lines(1, 2)\nfoo()")[0] is True
    assert doc_decision("drop_doc()\nfoo()")[0] is False  # one malformed call: the rest still applies


def test_chunk_program_removes_and_normalises_its_own_lines():
    lines = DOC.split("\n")
    chunks = [range(0, 3), range(3, 6)]
    result = apply_programs(
        DOC,
        "keep_doc()",
        chunks,
        [
            "remove_lines(line_start=1, line_end=2)\nnormalize(source_str='word1 ', target_str='')",
            "keep_chunk()",
        ],
    )
    expected = [lines[0].replace("word1 ", "")] + lines[3:]
    assert result.text == "\n".join(expected)
    assert result.removed_lines == 2
    # Normalisations are applied first, whatever the order the program lists them in.
    assert result.executed == [
        "keep_doc()",
        'normalize(source_str="word1 ", target_str="")',
        "remove_lines(line_start=1, line_end=2)",
    ]
    assert result.metadata()["kept"] is True and result.malformed == []


def test_a_program_with_two_malformed_calls_leaves_its_chunk_alone():
    chunks = [range(0, 3), range(3, 6)]
    one_bad = apply_programs(DOC, "keep_doc()", chunks, ["remove_lines(0, 0)\nbogus()", "keep_chunk()"])
    assert one_bad.text == "\n".join(DOC.split("\n")[1:]) and one_bad.ignored_chunks == 0
    two_bad = apply_programs(
        DOC, "keep_doc()", chunks, ["remove_lines(0, 0)\nbogus()\nalso bad", "keep_chunk()"]
    )
    assert two_bad.text == DOC and two_bad.ignored_chunks == 1 and len(two_bad.malformed) == 2


def test_calls_outside_their_chunk_or_backwards_are_malformed():
    chunks = [range(0, 3), range(3, 6)]
    result = apply_programs(DOC, "keep_doc()", chunks, ["remove_lines(2, 4)", "remove_lines(5, 4)"])
    assert result.text == DOC
    assert "outside this chunk (0-2)" in result.malformed[0] and "before line_start" in result.malformed[1]


def test_word_rule_drops_what_is_left_too_short():
    doc = "\n".join(f"{WORDS}" for _ in range(10))  # 200 words
    chunks = [range(0, 10)]
    # Everything but one line of 20 words: 10% left, 20 words: kept.
    assert apply_programs(doc, "keep_doc()", chunks, ["remove_lines(1, 9)"]).kept
    short = "\n".join(["a b c d e f g h i j k", *([WORDS] * 9)])  # 11 + 180 words
    # 11 words left (> 10) but 11 / 191 = 5.8% (> 5%): kept; 10 words left: dropped.
    assert apply_programs(short, "keep_doc()", chunks, ["remove_lines(1, 9)"]).kept
    dropped = apply_programs(short, "keep_doc()", chunks, ["remove_lines(1, 9)\nnormalize(' k', '')"])
    assert not dropped.kept and dropped.reason == "10 of 191 words left"
    assert apply_programs(doc, "drop_doc()", chunks, ["keep_chunk()"]).reason == "drop_doc"


def test_normalisations_that_would_blow_the_document_up_are_refused():
    doc = "\n".join(["a" * 5_000, WORDS])
    result = apply_programs(doc, "keep_doc()", [range(0, 2)], [f"normalize('a', '{'b' * 900}')"])
    assert result.text == doc and "would add" in result.malformed[0]


def test_line_numbering_is_global_and_zero_padded():
    assert number_lines(["a", "b"], start=9) == "[009] a\n[010] b"
    assert number_lines(["x"] * 2, start=999).split("\n") == ["[0999] x", "[1000] x"]


def test_chunks_cover_every_line_once_within_the_budget():
    lines = [("w " * n).strip() for n in (5, 50, 3, 400, 2, 2, 90)]
    count = lambda text: len(text.split())  # noqa: E731 - a token counter for the test
    chunks = chunk_lines(lines, count, budget=100)
    assert [i for c in chunks for i in c] == list(range(len(lines)))
    for c in chunks:
        cost = sum(count(number_lines([lines[i]], start=i)) + 1 for i in c)
        assert cost <= 100 or len(c) == 1  # a single line over the budget is a chunk of its own
    assert range(3, 4) in chunks


def test_executor_refuses_what_it_cannot_apply():
    with pytest.raises(ProgramError, match="2 chunks but 1 chunk programs"):
        apply_programs(DOC, "keep_doc()", [range(0, 3), range(3, 6)], ["keep_chunk()"])
    with pytest.raises(ProgramError, match="cover lines 0..5"):
        apply_programs(DOC, "keep_doc()", [range(0, 3)], ["keep_chunk()"])
    with pytest.raises(ProgramError, match="longer than any refiner writes"):
        parse_program("keep_doc()\n" * (MAX_PROGRAM // 5), DOC_FUNCTIONS)
    with pytest.raises(ProgramError, match="a program is text"):
        parse_program(None, DOC_FUNCTIONS)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ property-based

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
_call_text = st.one_of(
    _text,
    st.builds(
        lambda name, body: f"{name}({body})",
        st.sampled_from([*CHUNK_FUNCTIONS, *DOC_FUNCTIONS, "eval", "__import__", "exec"]),
        _text,
    ),
)
_program = st.lists(_call_text, max_size=6).map("\n".join)
_calls = st.lists(
    st.one_of(
        st.builds(
            lambda a, b: Call("remove_lines", (("line_start", a), ("line_end", b))),
            st.integers(-(10**8), 10**8),
            st.integers(-(10**8), 10**8),
        ),
        st.builds(
            lambda a, b: Call("normalize", (("source_str", a), ("target_str", b))),
            st.text(max_size=40),
            st.text(max_size=40),
        ),
        st.just(Call("keep_chunk")),
    ),
    max_size=6,
)


@contextlib.contextmanager
def no_code_execution():
    """eval, exec and compile raise inside the block: the parser and executor must never need them."""

    def refuse(*args, **kwargs):
        raise AssertionError("the program parser ran Python code")

    saved = {name: getattr(builtins, name) for name in ("eval", "exec", "compile")}
    for name in saved:
        setattr(builtins, name, refuse)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(builtins, name, fn)


@settings(max_examples=300, deadline=500)
@given(calls=_calls)
def test_rendered_programs_parse_back_to_the_same_calls(calls):
    assert parse_program(render_program(calls), CHUNK_FUNCTIONS).calls == tuple(calls)


@settings(max_examples=300, deadline=500)
@given(doc_program=_program, programs=st.lists(_program, min_size=2, max_size=2), doc=_text)
def test_no_program_raises_anything_but_program_error(doc_program, programs, doc):
    lines = doc.split("\n")
    half = len(lines) // 2
    chunks = [range(0, half), range(half, len(lines))]
    try:
        with no_code_execution():
            result = apply_programs(doc, doc_program, chunks, programs)
    except ProgramError:
        return
    assert result.text is None or len(result.text) <= 2 * len(doc) + 1_000
    assert result.metadata()["doc_program"] == doc_program


def test_a_hostile_program_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    program = (
        f"__import__('os').system('touch {marker}')\nexec(\"open('{marker}', 'w')\")\nremove_lines(0, 0)"
    )
    with no_code_execution():
        result = apply_programs(DOC, "keep_doc()", [range(0, 6)], [program])
    assert not marker.exists()
    assert result.text == DOC and result.ignored_chunks == 1  # two malformed calls: ignored
