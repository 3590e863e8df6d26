"""Property tests of every parser that reads model output: on arbitrary text none raises and each answers in
its documented domain, and well-formed statements read back what was written."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from eval.calibration import parse_confidence
from eval.metrics import vote_answer
from eval.runner import read_samples, sample_line
from rewards.classification import (
    cls_accuracy,
    cls_contains,
    cls_equality,
    cls_format,
    cls_tags,
    mentioned_classes,
)
from rewards.math import extract_final_number, numeric_answer, numeric_answer_format
from rewards.qa import CONFIDENCE_LABEL, answer_part, normalize_answer, qa_contains

# Fast enough for the default test run; deadline off, as a loaded machine makes timings meaningless.
FUZZ = settings(max_examples=200, deadline=None)

# Text biased towards what the parsers look for: labels, markers, digits of several scripts, separators.
PIECES = st.sampled_from(
    [
        "Confidence",
        "confidence level",
        "Confidence score (0-100)",
        "Confidence (0 to 10)",
        "(%)",
        ":",
        "**",
        "_",
        " ",
        "\n",
        "%",
        "\u066a",
        "/",
        " out of ",
        ".",
        ",",
        "\u066b",
        "-",
        "e",
        "####",
        "\\boxed{",
        "}",
        "The answer is",
        "answer:",
        "$",
        "+",
        "\u2212",
        "<think>",
        "</think>",
        "<answer>",
        "</answer>",
        "the",
        "cat",
        "not",
    ]
)
DIGITS = st.text(alphabet="0123456789\u0660\u0665\u0669\u06f5\uff15", min_size=1, max_size=4)
MODEL_TEXT = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(PIECES, DIGITS, st.text(max_size=3)), max_size=25).map("".join),
)
# Text that states no confidence and ends in a line break, to put in front of a statement.
PREFIX = MODEL_TEXT.map(lambda text: text.replace("onfidence", "") + "\n").filter(
    lambda text: "confidence" not in text.casefold()
)


# -- parse_confidence ---------------------------------------------------------------------------


@FUZZ
@given(MODEL_TEXT)
def test_parse_confidence_is_none_or_a_probability(text):
    value = parse_confidence(text)
    assert value is None or (isinstance(value, float) and 0.0 <= value <= 1.0)


@FUZZ
@given(PREFIX, st.integers(0, 100), st.sampled_from(["%", " %", " percent", "\u066a"]))
def test_a_stated_percentage_reads_back(prefix, percent, sign):
    assert parse_confidence(f"{prefix}Confidence: {percent}{sign}") == percent / 100


@FUZZ
@given(PREFIX, st.integers(0, 10**6), st.sampled_from(["", ".", " (sure)", "**"]))
def test_a_stated_probability_reads_back(prefix, millionths, end):
    written = f"{millionths / 10**6:.6f}"
    assert parse_confidence(f"{prefix}**Confidence:** {written}{end}") == float(written)


@FUZZ
@given(PREFIX, st.integers(1, 1000).flatmap(lambda b: st.tuples(st.integers(0, b), st.just(b))))
def test_a_stated_fraction_reads_back(prefix, fraction):
    numerator, denominator = fraction
    assert parse_confidence(f"{prefix}Confidence: {numerator}/{denominator}") == numerator / denominator


@FUZZ
@given(PREFIX, st.integers(1, 1000).flatmap(lambda top: st.tuples(st.integers(0, top), st.just(top))))
def test_a_value_on_a_stated_scale_reads_back(prefix, stated):
    value, top = stated
    assert parse_confidence(f"{prefix}Confidence (0-{top}): {value}") == value / top


@FUZZ
@given(PREFIX, st.integers(0, 100), st.integers(0, 100))
def test_a_range_is_refused(prefix, low, high):
    assert parse_confidence(f"{prefix}Confidence: {low}-{high}%") is None


@FUZZ
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_scientific_notation_is_refused(number):
    assert parse_confidence(f"Confidence: {number:e}") is None


# -- numbers: extract_final_number, numeric_answer, numeric_answer_format -----------------------

# What extract_final_number returns: a plain number, digits of any script, no commas, "$", "%" or "+".
CLEAN_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)")
# Text without the answer markers extract_final_number looks for first.
NO_MARKERS = PREFIX.filter(
    lambda text: not re.search(r"####|\\boxed\{|answer\s+is|answer\s*:", text, re.IGNORECASE)
)


@FUZZ
@given(MODEL_TEXT)
def test_extract_final_number_is_none_or_a_clean_number(text):
    number = extract_final_number(text)
    assert number is None or (CLEAN_NUMBER.fullmatch(number) and isinstance(float(number), float))


@FUZZ
@given(PREFIX, st.integers(-(10**12), 10**12), st.sampled_from(["{:d}", "{:,d}", "${:,d}", "{:d}.00"]))
def test_a_gsm8k_answer_reads_back(prefix, value, form):
    written = form.format(value).replace("$-", "-$")
    assert float(extract_final_number(f"{prefix}#### {written}")) == value


@FUZZ
@given(NO_MARKERS, st.integers(-(10**6), 10**6), st.integers(0, 100))
def test_the_answer_is_not_the_stated_confidence(prefix, value, confidence):
    text = f"{prefix}The answer is {value}.\nConfidence: {confidence}%"
    assert extract_final_number(text) == str(value)
    assert extract_final_number(f"{prefix}{value}\nConfidence: {confidence}%") == str(value)


@FUZZ
@given(MODEL_TEXT, st.one_of(MODEL_TEXT, st.integers(), st.floats(), st.none()))
def test_numeric_answer_scores_in_its_domain(completion, answer):
    (score,) = numeric_answer(completions=[completion], answer=[answer])
    assert score in (0.0, 1.0, None)


@FUZZ
@given(MODEL_TEXT, st.integers(-(10**9), 10**9))
def test_a_final_marked_number_is_right_and_well_formatted(reasoning, value):
    completion = f"{reasoning}\n#### {value}"
    assert numeric_answer_format(completions=[completion]) == [1.0]
    if CONFIDENCE_LABEL.search(reasoning) is None:
        assert numeric_answer(completions=[completion], answer=[str(value)]) == [1.0]
    assert numeric_answer_format(completions=[reasoning]) in ([0.0], [1.0])


# -- short answers: normalize_answer, answer_part, qa_contains, vote_answer ---------------------

ANSWERS = MODEL_TEXT.filter(lambda text: normalize_answer(text) and CONFIDENCE_LABEL.search(text) is None)


@FUZZ
@given(MODEL_TEXT)
def test_normalize_answer_is_idempotent(text):
    once = normalize_answer(text)
    assert normalize_answer(once) == once


@FUZZ
@given(MODEL_TEXT)
def test_answer_part_is_the_text_up_to_its_first_confidence_label(text):
    part = answer_part(text)
    assert text.startswith(part) and CONFIDENCE_LABEL.search(part) is None
    assert part == text or CONFIDENCE_LABEL.match(text, len(part))


@FUZZ
@given(MODEL_TEXT, MODEL_TEXT, st.lists(MODEL_TEXT, max_size=3) | st.none())
def test_qa_contains_scores_in_its_domain(completion, gold, aliases):
    (score,) = qa_contains([completion], [gold], [aliases])
    assert score in (0.0, 1.0, None)


@FUZZ
@given(ANSWERS, st.integers(0, 100))
def test_a_gold_answer_with_a_confidence_is_right(gold, confidence):
    assert qa_contains([f"{gold}\nConfidence: {confidence}%"], [gold]) == [1.0]


@FUZZ
@given(NO_MARKERS, st.integers(0, 100))
def test_the_stated_confidence_never_matches_a_gold(prefix, confidence):
    completion = f"I do not know.\nConfidence: {confidence}%\n{prefix}"
    assert qa_contains([completion], [str(confidence)]) == [0.0]


@FUZZ
@given(MODEL_TEXT, st.sampled_from(["text", "number", "none"]))
def test_vote_answer_is_none_or_normalised(text, parser):
    answer = vote_answer(text, parser)
    if answer is None:
        return
    assert parser != "none"
    if parser == "text":
        assert answer == normalize_answer(answer) != ""
    else:
        assert repr(float(answer)) == answer


@FUZZ
@given(ANSWERS, st.integers(0, 100), st.integers(0, 100), st.sampled_from(["", ".", "!"]))
def test_votes_ignore_the_stated_confidence_and_end_punctuation(answer, first, second, end):
    assert vote_answer(f"{answer}\nConfidence: {first}%", "text") == vote_answer(
        f"{answer}{end}\nConfidence: {second}%", "text"
    )


# -- classification: the CLS-RL rewards and cls_contains -----------------------------------------

NAMES = st.text(alphabet="abc _", min_size=1, max_size=8).filter(lambda name: name.strip(" _"))


@FUZZ
@given(MODEL_TEXT, st.one_of(MODEL_TEXT, st.none()), st.lists(MODEL_TEXT, max_size=4) | MODEL_TEXT)
def test_classification_rewards_score_in_their_domain(completion, label, classes):
    for reward in (cls_accuracy, cls_equality, cls_format):
        (score,) = reward(completions=[completion], label=[label])
        assert score in (0.0, 1.0, None)
    (score,) = cls_contains(completions=[completion], label=[label], classes=[classes])
    assert score in (0.0, 1.0, None)
    assert cls_tags(completions=[completion]) in ([0.0], [0.25], [0.5], [0.75], [1.0])


@FUZZ
@given(MODEL_TEXT, MODEL_TEXT)
def test_the_thinking_format_reads_back(thinking, answer):
    completion = f"<think>{thinking}</think>\n<answer>{answer}</answer>"
    assert cls_format(completions=[completion]) == [1.0]
    if "<answer>" not in thinking + answer and "</answer>" not in answer:
        assert cls_accuracy(completions=[completion], label=[answer]) == ([1.0] if answer.strip() else [None])


@FUZZ
@given(
    st.lists(NAMES, min_size=2, max_size=5, unique_by=lambda name: " ".join(name.replace("_", " ").split()))
)
def test_cls_contains_passes_the_named_class_and_fails_a_list(names):
    gold, other = names[0], names[1]
    assert cls_contains(completions=[gold], label=[gold], classes=[names]) == [1.0]
    assert cls_contains(completions=[f"{gold} ; {other}"], label=[gold], classes=[names]) == [0.0]
    assert cls_contains(completions=[f"<answer>{other}</answer>"], label=[gold], classes=[names]) == [0.0]


@FUZZ
@given(MODEL_TEXT, st.lists(NAMES, max_size=5))
def test_mentioned_classes_are_among_the_candidates(text, names):
    mentioned = mentioned_classes(text, names)
    assert mentioned <= {" ".join(name.replace("_", " ").split()) for name in names}


# -- samples.jsonl: rows of model output survive a resume ----------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.lists(MODEL_TEXT, min_size=1, max_size=3), st.integers(0, 10**6), st.booleans())
def test_rows_of_any_text_read_back_after_a_torn_write(completions, cut, newline):
    rows = {
        i: {"index": i, "completions": [text], "answers": [vote_answer(text, "text")]}
        for i, text in enumerate(completions)
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "samples.jsonl"
        lines = [sample_line(row) for row in rows.values()]
        torn = sample_line({"index": len(rows), "completions": completions}).encode()
        tail = torn[: cut % len(torn)] if newline else b""
        body = "\n".join(lines) + ("\n" if newline else "")
        path.write_bytes(body.encode() + tail)
        assert read_samples(path, repair=True) == rows
        assert path.read_bytes() == "".join(line + "\n" for line in lines).encode()
