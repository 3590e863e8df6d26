"""Marker lists: rendering and parsing back, stripping, malformed and truncated model output, and the prompt-side
dropout's rates, checked statistically with a fixed seed."""

from __future__ import annotations

import math

import pytest

from posttrain.methods.markers.inference import MarkersMode, read_answer, with_markers
from posttrain.methods.markers.schema import (
    CATEGORY_NAMES,
    MarkerSchema,
    append_to_prompt,
    parse_output,
    prompt_markers,
    render_markers,
    strip_markers,
)

MARKERS = {
    "length_tokens": 199,
    "domain": "Code",
    "task": "Code generation",
    "language": "en",
    "code_language": "Python",
    "length_bucket": "medium",
    "length_sentences": 3,
    "format": "Code block",
}


def test_render_writes_the_schema_order_and_parse_reads_it_back():
    text = render_markers(MARKERS)
    assert text == (
        "<MARKER_LIST> <domain> Code </domain> <task> Code generation </task> <format> Code block </format> "
        "<language> en </language> <code_language> Python </code_language> <length_tokens> 199 </length_tokens> "
        "<length_sentences> 3 </length_sentences> <length_bucket> medium </length_bucket> </MARKER_LIST>"
    )
    parsed = parse_output(text + "\nThe answer.")
    assert parsed.status == "ok"
    assert parsed.answer == "The answer."
    assert parsed.markers == {k: str(v) for k, v in MARKERS.items()}
    assert parsed.marker_text == text


def test_values_lose_angle_brackets_and_line_breaks():
    text = render_markers({"domain": "a <b>\n c", "task": ""})
    assert text == "<MARKER_LIST> <domain> a b c </domain> </MARKER_LIST>"
    assert render_markers({}) == ""


def test_user_markers_extend_the_schema_after_the_papers():
    schema = MarkerSchema(["audience"])
    assert schema.names == (*CATEGORY_NAMES, "audience")
    assert render_markers({"audience": "kids", "domain": "Math"}, schema) == (
        "<MARKER_LIST> <domain> Math </domain> <audience> kids </audience> </MARKER_LIST>"
    )
    for bad in (["domain"], ["two words"], ["a", "a"], ["MARKER_LIST"]):
        with pytest.raises(ValueError):
            MarkerSchema(bad)


@pytest.mark.parametrize(
    ("output", "answer", "status", "markers"),
    [
        ("Just an answer.", "Just an answer.", "none", {}),
        ("", "", "none", {}),
        ("<MARKER_LIST> <domain> Math </domain> </MARKER_LIST> 42", "42", "ok", {"domain": "Math"}),
        # cut inside a marker: nothing of an answer yet
        ("<MARKER_LIST> <domain> Math </domain> <length_tok", "", "truncated", {"domain": "Math"}),
        ("<MARKER_LIST> <domain> Ma", "", "truncated", {}),
        ("<MARKER_", "", "truncated", {}),
        ("<MARKER_LIST> <domain> Math </domain> </MARKER_", "", "truncated", {"domain": "Math"}),
        # the closing tag forgotten, then an answer
        (
            "<MARKER_LIST> <domain> Math </domain>\nThe answer is 4.",
            "The answer is 4.",
            "truncated",
            {"domain": "Math"},
        ),
        # junk inside a closed list
        (
            "<MARKER_LIST> junk <task> QA </task> <bad </MARKER_LIST> Paris",
            "Paris",
            "malformed",
            {"task": "QA"},
        ),
        # mismatched tags are no marker
        ("<MARKER_LIST> <domain> Math </task> </MARKER_LIST> x", "x", "malformed", {}),
    ],
)
def test_malformed_and_truncated_lists_parse_without_an_exception(output, answer, status, markers):
    parsed = parse_output(output)
    assert (parsed.answer, parsed.status, parsed.markers) == (answer, status, markers)


def test_parse_output_takes_anything():
    assert parse_output(None).answer == ""
    assert parse_output(12).answer == "12"


def test_inferred_mode_strips_the_list_and_keeps_it_in_the_record():
    text = render_markers({"domain": "Math", "length_bucket": "short"}) + "\n#### 12"
    assert strip_markers(text) == "#### 12"
    mode = MarkersMode("inferred")
    assert mode.prompt([{"role": "user", "content": "q"}], {}) == [{"role": "user", "content": "q"}]
    answer, record = mode.answer(text)
    assert answer == "#### 12"
    assert record == {
        "markers": {"domain": "Math", "length_bucket": "short"},
        "status": "ok",
        "repeated": False,
    }
    assert read_answer(text).raw == text


def test_fixed_mode_appends_the_users_and_the_rows_markers():
    mode = MarkersMode("fixed", {"length_bucket": "short"}, ["domain"])
    prompt = mode.prompt([{"role": "user", "content": "q"}], {"domain": "Math"})
    assert prompt == [
        {
            "role": "user",
            "content": "q\n<MARKER_LIST> <domain> Math </domain> <length_bucket> short </length_bucket> </MARKER_LIST>",
        }
    ]
    assert with_markers("q", {}) == "q"
    with pytest.raises(ValueError, match="fixed mode needs markers"):
        MarkersMode("fixed")
    with pytest.raises(ValueError, match="inferred mode sends no markers"):
        MarkersMode("inferred", {"domain": "Math"})
    with pytest.raises(ValueError, match="not dataset columns"):
        MarkersMode("fixed", columns=["topic"]).prompt("q", {"domain": "Math"})


def test_append_to_prompt_goes_after_the_last_user_turn():
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert append_to_prompt(messages, "<M>")[-1]["content"] == "q\n<M>"
    assert messages[-1]["content"] == "q"  # the caller's prompt is not changed
    assert append_to_prompt("q", "<M>") == "q\n<M>"
    with pytest.raises(ValueError, match="no user turn"):
        append_to_prompt([{"role": "system", "content": "s"}], "<M>")


def _within(count: int, total: int, rate: float, sigmas: float = 4.0) -> bool:
    return abs(count - total * rate) <= sigmas * math.sqrt(total * rate * (1 - rate))


@pytest.mark.parametrize(("dataset_rate", "sample_rate"), [(0.5, 0.5), (0.2, 0.7), (0.0, 0.3)])
def test_dropout_rates_match_the_settings(dataset_rate, sample_rate):
    rows = 4000
    shown = [
        prompt_markers(MARKERS, dataset_rate=dataset_rate, sample_rate=sample_rate, seed=7, epoch=0, key=i)
        for i in range(rows)
    ]
    # A row shows nothing when the dataset-level draw drops it, or when every marker is dropped one by one.
    empty_rate = dataset_rate + (1 - dataset_rate) * sample_rate ** len(MARKERS)
    assert _within(sum(not s for s in shown), rows, empty_rate)
    # Among the rows the dataset-level draw kept, each marker shows with 1 - sample_rate. (Rows left empty by the
    # sample-level draws alone are rare enough at these settings to count as dataset-level drops here.)
    kept = [s for s in shown if s]
    for name in MARKERS:
        assert _within(sum(name in s for s in kept), len(kept), 1 - sample_rate, sigmas=5.0), name
    # What is shown is always the row's own value.
    assert all(s[k] == str(MARKERS[k]) for s in kept for k in s)


def test_dropout_draws_afresh_each_epoch_and_repeats_for_the_same_epoch():
    def draw(epoch: int, seed: int = 3) -> list[dict]:
        return [
            prompt_markers(MARKERS, dataset_rate=0.5, sample_rate=0.5, seed=seed, epoch=epoch, key=i)
            for i in range(500)
        ]

    assert draw(0) == draw(0)
    changed = sum(a != b for a, b in zip(draw(0), draw(1), strict=True))
    # Two independent draws agree for a row with probability ~0.26 (both empty, or the same subset).
    assert 300 < changed < 420
    assert draw(0) != draw(0, seed=4)


def test_no_dropout_and_full_dropout():
    everything = prompt_markers(MARKERS, dataset_rate=0.0, sample_rate=0.0, seed=0, epoch=0, key=1)
    assert everything == {k: str(v) for k, v in MARKERS.items()}
    assert prompt_markers(MARKERS, dataset_rate=1.0, sample_rate=0.0, seed=0, epoch=0, key=1) == {}


@pytest.mark.parametrize(
    ("text", "answer", "status"),
    [
        # the degenerate continuation of a briefly trained model: the answer, then its list again, to the limit
        (
            "<MARKER_LIST> <task> Math reasoning </task> </MARKER_LIST>\n129 spools\n<MARKER_LIST> <task> Math "
            "reasoning </task> </MARKER_LIST>\n<MARKER_LIST> <task> Math",
            "129 spools",
            "ok",
        ),
        ("The answer.\n<MARKER_LIST> <task> QA </task>", "The answer.", "none"),
        ("<MARKER_LIST> <task> QA </task> </MARKER_LIST>\n<MARKER_LIST> <task> QA </task>", "", "ok"),
    ],
)
def test_a_later_marker_list_is_cut_from_the_answer(text, answer, status):
    parsed = parse_output(text)
    assert (parsed.answer, parsed.status, parsed.repeated) == (answer, status, True)
    assert strip_markers(text) == answer


def test_an_answer_without_a_later_list_is_not_marked_repeated():
    parsed = parse_output("<MARKER_LIST> <task> QA </task> </MARKER_LIST>\nParis, not <MARKER> tags.")
    assert (parsed.answer, parsed.repeated) == ("Paris, not <MARKER> tags.", False)
