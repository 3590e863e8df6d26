"""The built-in rewards: hand-written completions, exact expected scores, edge cases included."""

from __future__ import annotations

import pytest

from rewards import (
    cls_accuracy,
    cls_contains,
    cls_equality,
    cls_format,
    completion_text,
    extract_final_number,
    normalize_class_name,
    numeric_answer,
    numeric_answer_format,
)


def chat(text: str) -> list[dict[str, str]]:
    """A completion in TRL's conversational format."""
    return [{"role": "assistant", "content": text}]


# -- completion_text ----------------------------------------------------------------------------


def test_completion_text_standard_format_is_returned_unchanged():
    assert completion_text("  42\n") == "  42\n"
    assert completion_text("") == ""


def test_completion_text_conversational_format():
    assert completion_text(chat("#### 5")) == "#### 5"
    assert completion_text([]) == ""
    assert completion_text([{"role": "assistant", "content": None}]) == ""
    assert completion_text({"role": "assistant", "content": "single"}) == "single"


def test_completion_text_takes_the_last_assistant_message():
    messages = [
        {"role": "assistant", "content": "let me call a tool"},
        {"role": "tool", "content": "17"},
        {"role": "assistant", "content": "#### 17"},
        {"role": "tool", "content": "ignored"},
    ]
    assert completion_text(messages) == "#### 17"
    assert completion_text([{"role": "tool", "content": "x"}]) == ""


def test_completion_text_joins_text_parts_of_multimodal_content():
    message = {
        "role": "assistant",
        "content": [{"type": "text", "text": "<answer>"}, {"type": "image"}, {"text": "cat</answer>"}],
    }
    assert completion_text([message]) == "<answer>cat</answer>"


def test_completion_text_rejects_other_types():
    with pytest.raises(TypeError, match="string or a list of messages"):
        completion_text(42)
    with pytest.raises(TypeError, match="message dicts"):
        completion_text(["not a message"])


# -- extract_final_number -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#### 72", "72"),
        ("3 + 4 = 7\n#### 1,234", "1234"),
        ("#### 12.50 and 99 later", "12.50"),  # "####" beats the last number
        ("#### 5\n#### 6", "6"),  # the last marker counts
        ("####-3", "-3"),
        ("So \\boxed{-3} and then 7", "-3"),
        ("\\boxed{1,000} vs 2", "1000"),
        ("\\boxed{\\text{42 apples}} 9", "42"),
        ("\\boxed{5} ... \\boxed{6} 7", "6"),
        ("cut off \\boxed{8", "8"),
        ("The answer is $1,234.", "1234"),
        ("Final Answer: 50%", "50"),
        ("answer: +7", "7"),
        ("The answer is 5, not 6.", "5"),
        ("The answer is below.\nFirst 3, then 4", "4"),  # "answer is" reads its own line only
        ("I have 3 apples and 4 pears.", "4"),
        ("x = -3", "-3"),
        ("5-3=2", "2"),
        ("(5)-2", "2"),
        ("it costs $12.50.", "12.50"),
        ("about .5 of it", ".5"),
        ("minus \u22124", "-4"),
        ("42 comes first ####", "42"),  # a marker without a number falls through
        ("42\nConfidence: 90%", "42"),  # a stated confidence is not the answer
        ("The answer is 7. Confidence (0-100): 85", "7"),
        ("Confidence: 90%", None),
        ("no digits here", None),
        ("", None),
    ],
)
def test_extract_final_number(text, expected):
    assert extract_final_number(text) == expected


# -- numeric_answer -----------------------------------------------------------------------------


def test_numeric_answer_scores_final_number_against_answer_column():
    completions = [
        "Adding up, 1000 + 234.\n#### 1,234",
        "The answer is 1234.0",
        "1233",
        "no number at all",
        "",
        "#### 1234\nWait, maybe 99",
    ]
    assert numeric_answer(completions=completions, answer=["1234"] * 6) == [
        1.0,
        1.0,
        0.0,
        0.0,
        0.0,
        1.0,
    ]


def test_numeric_answer_compares_numbers_not_strings():
    completions = ["12.5", "$12.50", "x = -3", "3", "1,234", "#### 72"]
    answers = ["12.50", 12.5, "-3", "-3", "1234", 72]
    assert numeric_answer(completions=completions, answer=answers) == [1.0, 1.0, 1.0, 0.0, 1.0, 1.0]


def test_numeric_answer_reads_a_whole_gsm8k_solution_as_the_answer():
    gold = "She sells 16 - 3 - 4 = 9 eggs, at $2 each: 9 * 2 = 18.\n#### 18"
    assert numeric_answer(completions=["She makes $18.", "9"], answer=[gold, gold]) == [1.0, 0.0]


def test_numeric_answer_is_none_where_the_row_has_no_numeric_answer():
    completions = ["5", "5", "5", "5"]
    assert numeric_answer(completions=completions, answer=[None, "unknown", True, float("nan")]) == [
        None,
        None,
        None,
        None,
    ]


def test_numeric_answer_conversational_format_and_extra_kwargs():
    scores = numeric_answer(
        prompts=[[{"role": "user", "content": "2+3?"}]],
        completions=[chat("It is 5.")],
        completion_ids=[[1, 2]],
        answer=["5"],
        trainer_state=None,
    )
    assert scores == [1.0]


def test_numeric_answer_relative_tolerance():
    assert numeric_answer(completions=["1000.5"], answer=["1000"]) == [0.0]
    assert numeric_answer(completions=["1000.5"], answer=["1000"], rel_tol=1e-3) == [1.0]


def test_numeric_answer_does_not_read_the_stated_confidence():
    completions = ["42\nConfidence: 90%", "42\nConfidence: 90%"]
    assert numeric_answer(completions=completions, answer=["42", "90"]) == [1.0, 0.0]


def test_numeric_answer_rejects_mismatched_columns():
    with pytest.raises(ValueError):
        numeric_answer(completions=["1", "2"], answer=["1"])


# -- numeric_answer_format ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("Reasoning...\n#### 42", 1.0),
        ("#### 42  \n", 1.0),
        ("####-1,234.5", 1.0),
        ("#### $5", 1.0),
        ("#### 42 apples", 0.0),
        ("#### 42.", 0.0),
        ("####\n42", 0.0),
        ("The answer is 42", 0.0),
        ("#### forty-two", 0.0),
        ("", 0.0),
    ],
)
def test_numeric_answer_format(completion, expected):
    assert numeric_answer_format(completions=[completion]) == [expected]
    assert numeric_answer_format(completions=[chat(completion)]) == [expected]


# -- cls_format ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>fur, whiskers</think><answer>cat</answer>", 1.0),
        ("<think>\nstep 1\nstep 2\n</think>\n\n<answer>\ncat\n</answer>\n", 1.0),
        ("  <think>a</think> <answer>b</answer>  ", 1.0),
        ("<think></think><answer></answer>", 1.0),
        # The paper's pattern lets a second block through; cls_accuracy then scores it 0.
        ("<think>a</think><answer>b</answer><answer>c</answer>", 1.0),
        ("Sure! <think>a</think><answer>b</answer>", 0.0),
        ("<think>a</think><answer>b</answer> Done.", 0.0),
        ("<think>a</think> so: <answer>b</answer>", 0.0),
        ("<answer>b</answer>", 0.0),
        ("<think>a</think>", 0.0),
        ("<answer>b</answer><think>a</think>", 0.0),
        ("<THINK>a</THINK><ANSWER>b</ANSWER>", 0.0),
        ("<think>a</think><answer>b", 0.0),
        ("cat", 0.0),
        ("", 0.0),
    ],
)
def test_cls_format(completion, expected):
    assert cls_format(completions=[completion]) == [expected]
    assert cls_format(completions=[chat(completion)]) == [expected]


# -- cls_accuracy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "label", "expected"),
    [
        ("<think>long ears</think><answer> Golden Retriever </answer>", "golden retriever", 1.0),
        ("<think>\nhmm\n</think>\n<answer>\nCat\n</answer>", "cat", 1.0),
        ("<answer>cat</answer>", "  Cat ", 1.0),  # no format check here: that is cls_format's job
        ("<answer>3</answer>", 3, 1.0),
        ("<answer>golden_retriever</answer>", "golden retriever", 0.0),  # no "_" rule here
        ("<answer>cat.</answer>", "cat", 0.0),
        ("<answer>a cat</answer>", "cat", 0.0),
        ("<think>cat</think>", "cat", 0.0),
        ("cat", "cat", 0.0),
        ("<answer>cat</answer><answer>dog</answer>", "cat", 0.0),  # hedging scores 0
        ("<answer>cat", "cat", 0.0),
        ("", "cat", 0.0),
    ],
)
def test_cls_accuracy(completion, label, expected):
    assert cls_accuracy(completions=[completion], label=[label]) == [expected]
    assert cls_accuracy(completions=[chat(completion)], label=[label]) == [expected]


def test_cls_accuracy_is_none_without_a_gold_class():
    assert cls_accuracy(completions=["<answer>cat</answer>"] * 2, label=[None, "  "]) == [None, None]


# -- cls_equality and normalize_class_name ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (" Golden_Retriever.", "golden retriever"),
        ("St. Bernard", "st. bernard"),
        ("cat..", "cat."),
        ("cat .", "cat "),  # the period goes, the space before it stays
        ("Straße", "strasse"),
        ("", ""),
    ],
)
def test_normalize_class_name(name, expected):
    assert normalize_class_name(name) == expected


@pytest.mark.parametrize(
    ("completion", "label", "expected"),
    [
        ("Golden Retriever", "golden_retriever", 1.0),
        (" cat.\n", "cat", 1.0),
        ("CAT", "Cat.", 1.0),
        ("golden_retriever", "Golden Retriever", 1.0),
        ("cat..", "cat", 0.0),
        ("cat .", "cat", 0.0),
        ("golden  retriever", "golden retriever", 0.0),
        ("'cat'", "cat", 0.0),
        ("The answer is cat", "cat", 0.0),
        ("<answer>cat</answer>", "cat", 0.0),
        ("<think>fur</think><answer>cat</answer>", "cat", 0.0),
        ("cat\ndog", "cat", 0.0),
        ("", "cat", 0.0),
    ],
)
def test_cls_equality(completion, label, expected):
    assert cls_equality(completions=[completion], label=[label]) == [expected]
    assert cls_equality(completions=[chat(completion)], label=[label]) == [expected]


def test_cls_equality_is_none_without_a_gold_class():
    assert cls_equality(completions=["", "cat"], label=["", None]) == [None, None]


# -- cls_contains -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "label", "expected"),
    [
        ("<think>x</think><answer>It is a golden retriever.</answer>", "Golden_Retriever", 1.0),
        ("I think it's a CAT", "cat", 1.0),  # no tags: the whole completion is the answer
        ("wildcat", "cat", 0.0),  # whole mentions only
        ("cats", "cat", 0.0),
        ("A cat, clearly (cat).", "cat", 1.0),
        ("golden_retriever", "golden retriever", 1.0),
        ("<think>cat or dog?</think><answer>dog</answer>", "cat", 0.0),  # only the answer counts
        ("<answer>cat</answer><answer>dog</answer>", "cat", 0.0),  # listing candidates fails
        ("<answer>dog</answer>", "cat", 0.0),
        ("", "cat", 0.0),
    ],
)
def test_cls_contains(completion, label, expected):
    assert cls_contains(completions=[completion], label=[label]) == [expected]
    assert cls_contains(completions=[chat(completion)], label=[label]) == [expected]


@pytest.mark.parametrize(
    ("completion", "label", "classes", "expected"),
    [
        ("not sarcastic", "sarcastic", "sarcastic, not sarcastic", 0.0),
        ("not sarcastic", "not sarcastic", "sarcastic, not sarcastic", 1.0),
        ("It is sarcastic.", "sarcastic", "sarcastic, not sarcastic", 1.0),
        ("Sarcastic, not sarcastic?", "sarcastic", "sarcastic, not sarcastic", 0.0),  # both named
        ("very positive", "positive", ["positive", "very positive"], 0.0),
        ("very positive", "very positive", ["positive", "very positive"], 1.0),
        ("positive, very much", "positive", ["positive", "very positive"], 1.0),
        ("wildcat", "cat", ["cat", "wildcat"], 0.0),
        ("a wildcat", "wildcat", ["cat", "wildcat"], 1.0),
        ("a wild cat", "wildcat", ["cat", "wildcat"], 0.0),
        ("a cat, not a wildcat", "cat", ["cat", "wildcat"], 0.0),
        ("<answer>Very_Positive</answer>", "very positive", ["positive", "very positive"], 1.0),
    ],
)
def test_cls_contains_counts_whole_mentions_longest_first(completion, label, classes, expected):
    """Nested class names: the longest name an answer mentions is consumed, so the shorter one inside it is not
    a second mention, and a shorter gold inside the name the model gave is not a hit."""
    assert cls_contains(completions=[completion], label=[label], classes=[classes]) == [expected]


def test_cls_contains_is_none_without_a_gold_class():
    assert cls_contains(completions=["cat"], label=[None]) == [None]


def test_classification_rewards_score_a_batch_in_order():
    completions = [
        "<think>whiskers</think>\n<answer>cat</answer>",
        "<think>barks</think><answer>Dog</answer> extra",
        "cat",
        "<answer>bird</answer>",
    ]
    labels = ["cat", "dog", "cat", "cat"]
    assert cls_format(completions=completions, label=labels) == [1.0, 0.0, 0.0, 0.0]
    assert cls_accuracy(completions=completions, label=labels) == [1.0, 1.0, 0.0, 0.0]
    assert cls_equality(completions=completions, label=labels) == [0.0, 0.0, 1.0, 0.0]
    assert cls_contains(completions=completions, label=labels) == [1.0, 1.0, 1.0, 0.0]


class TestQaContains:
    def test_gold_or_alias_as_whole_words(self):
        from rewards.qa import qa_contains

        completions = [
            "The capital is Paris.\nConfidence: 90%",
            "It is the city of paris",
            "Parisian food",
            "Big Apple, I think",
            "I don't know. Confidence: 10%",
        ]
        answer = ["Paris", "Paris", "Paris", "New York City", "Paris"]
        aliases = [[], None, ["Paris, France"], ["NYC", "Big Apple"], []]
        assert qa_contains(completions, answer, aliases) == [1.0, 1.0, 0.0, 1.0, 0.0]

    def test_confidence_number_never_matches_and_missing_gold_is_none(self):
        from rewards.qa import qa_contains

        assert qa_contains(["Paris. Confidence: 1990"], ["1990"]) == [0.0]
        assert qa_contains([[{"role": "assistant", "content": "1990"}]], ["1990"]) == [1.0]
        assert qa_contains(["anything"], [""]) == [None]
