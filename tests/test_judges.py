"""Judges mark answers correct, wrong or not judged; any 0/1 reward is one, plugged in by name, module:function or
file.py:function, and a graded score is refused rather than rounded."""

from __future__ import annotations

import pytest

from rewards.judges import DEFAULT_JUDGE, JudgeError, load_judge

CHAT = [{"role": "user", "content": "What is the capital of France?"}]


def judge_rows(judge, answers, rows):
    return judge([CHAT] * len(answers), answers, rows)


def test_default_judge_matches_gold_and_aliases_after_normalising():
    judge = load_judge(DEFAULT_JUDGE)
    assert judge.columns == {"answer"}
    rows = [
        {"question": "q", "answer": "Paris", "aliases": ["City of Light"]},
        {"question": "q", "answer": "Paris", "aliases": ["City of Light"]},
        {"question": "q", "answer": "Paris", "aliases": ["City of Light"]},
        {"question": "q", "answer": "Paris", "aliases": ["City of Light"]},
        {"question": "q", "answer": "Paris", "aliases": []},
        {"question": "q", "answer": "The United States", "aliases": []},
        {"question": "q", "answer": None, "aliases": []},
    ]
    answers = [
        "The capital of France is PARIS.",  # case and punctuation
        "It is the city of light!",  # an alias
        "Lyon",  # wrong
        "Lyon.\nConfidence (0-9): 9 because Paris is bigger",  # only the answer before the confidence counts
        "Parisian food is great",  # whole words only: 'Parisian' is not 'Paris'
        "united states",  # articles dropped on both sides
        "Paris",  # no gold: not judged
    ]
    assert judge_rows(judge, answers, rows) == [True, True, False, False, False, True, None]


def test_a_math_reward_judges_final_numbers():
    judge = load_judge("numeric_answer")
    rows = [{"answer": "42"}, {"answer": "42"}, {"answer": "7"}]
    assert judge_rows(judge, ["So the total is 40 + 2 = 42.", "#### 41", "7.0"], rows) == [True, False, True]


def test_judges_plug_in_by_module_and_by_file(tmp_path):
    assert load_judge("rewards.qa:qa_contains").name == "qa_contains"
    plugin = tmp_path / "my_judge.py"
    plugin.write_text(
        "def same_length(completions, answer, **kwargs):\n"
        "    texts = [c[0]['content'] if isinstance(c, list) else c for c in completions]\n"
        "    return [len(t) == len(a) for t, a in zip(texts, answer)]\n"
    )
    judge = load_judge("my_judge.py:same_length", base_dir=tmp_path)
    assert judge.name == "same_length"
    assert judge_rows(judge, ["abc", "abcd"], [{"answer": "xyz"}, {"answer": "xyz"}]) == [True, False]


def test_a_graded_score_is_no_verdict():
    judge = load_judge("cls_tags")
    with pytest.raises(JudgeError, match="cls_tags.*0.25.*returns 1 \\(correct\\), 0 \\(wrong\\) or None"):
        judge_rows(judge, ["<think>only the first tag"], [{"label": "x"}])


def test_an_unknown_judge_names_the_nearest():
    with pytest.raises(ValueError, match="qa_contains"):
        load_judge("qa_contain")
