"""Property tests of every parser that reads model output: on arbitrary text none raises and each answers in
its documented domain, and well-formed statements read back what was written."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from eval.calibration import parse_confidence

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
