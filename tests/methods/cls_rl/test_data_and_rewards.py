"""The classification data builder (CLS-RL prompts) and the classification rewards on hand-written text."""

from __future__ import annotations

import collections

import pytest
from datasets import Dataset, DatasetDict

from posttrain.methods.cls_rl.config import ClassificationArguments
from posttrain.methods.cls_rl.data import build_classification, candidate_count
from rewards.classification import cls_accuracy, cls_contains, cls_equality, cls_format, cls_tags


def _splits(num_classes: int, per_class: int = 6) -> DatasetDict:
    def rows(split: str):
        return [
            {"text": f"{split} example {i} of class {c}", "label": f"class_{c:03d}"}
            for c in range(num_classes)
            for i in range(per_class)
        ]

    return DatasetDict({"train": Dataset.from_list(rows("train")), "test": Dataset.from_list(rows("test"))})


def _build(num_classes: int = 7, **fields) -> DatasetDict:
    return build_classification(_splits(num_classes), ClassificationArguments(label_column="label", **fields))


@pytest.mark.parametrize(
    ("classes", "expected"),
    [(2, 2), (7, 7), (29, 29), (30, 12), (31, 13), (100, 40), (250, 100), (1000, 100)],
)
def test_candidate_count_follows_the_paper_rule(classes, expected):
    # every name under 30 classes, else 40% rounded up, at most 100
    assert candidate_count(classes) == expected


@pytest.mark.parametrize("num_classes", [5, 40, 300])
def test_gold_is_always_listed_and_lists_have_the_rule_size(num_classes):
    built = _build(num_classes)
    expected = candidate_count(num_classes)
    for split in ("train", "test"):
        for row in built[split]:
            names = row["classes"].split(", ")
            assert row["label"] in names
            assert len(names) == expected == len(set(names))


def test_underscores_become_spaces_and_can_be_kept():
    assert _build()["train"][0]["label"] == "class 000"
    assert _build(underscores_to_spaces=False)["train"][0]["label"] == "class_000"


def test_k_shot_keeps_k_rows_per_class_chosen_by_seed():
    first = _build(shots_per_class=2, class_seed=0)["train"]
    again = _build(shots_per_class=2, class_seed=0)["train"]
    other = _build(shots_per_class=2, class_seed=1)["train"]
    assert collections.Counter(first["label"]) == {f"class {c:03d}": 2 for c in range(7)}
    assert first["text"] == again["text"]
    assert first["text"] != other["text"]
    assert len(_build()["test"]) == 42  # test rows are never cut


def test_candidate_order_is_shuffled_by_seed_and_stable_for_a_row():
    a, b = _build(class_seed=0)["test"], _build(class_seed=3)["test"]
    assert a["classes"] == _build(class_seed=0)["test"]["classes"]
    assert a["classes"] != b["classes"]
    assert len({row["classes"] for row in a}) > 10  # not one fixed order for every row
    # The same row gets the same list wherever it sits in the split (train, held-out check and eval agree).
    reversed_test = _splits(7)["test"].select(range(41, -1, -1))
    again = build_classification(
        DatasetDict({"test": reversed_test}), ClassificationArguments(label_column="label")
    )["test"]
    assert dict(zip(again["text"], again["classes"], strict=True)) == dict(
        zip(a["text"], a["classes"], strict=True)
    )


def test_random_class_is_a_seeded_candidate_that_ignores_the_label():
    rows = _build(num_classes=5, class_seed=0)["test"]  # 5 classes x 6 rows
    assert all(row["random_class"] in row["classes"].split(", ") for row in rows)
    assert rows["random_class"] == _build(num_classes=5, class_seed=0)["test"]["random_class"]
    hits = sum(row["random_class"] == row["label"] for row in rows)
    assert hits < len(rows) / 2  # the gold class about 1 time in 5, not every time
    assert len(set(rows["random_class"])) == 5


def test_base_to_new_splits_classes_disjointly():
    built = _build(8, base_to_new=True)
    base = {r["label"] for r in built["test"] if r["class_group"] == "base"}
    new = {r["label"] for r in built["test"] if r["class_group"] == "new"}
    assert base == {f"class {c:03d}" for c in range(4)} and new == {f"class {c:03d}" for c in range(4, 8)}
    assert set(built["train"]["label"]) == base  # training never sees a new class
    for row in built["test"]:
        group = base if row["class_group"] == "base" else new
        assert set(row["classes"].split(", ")) <= group  # candidates come from the row's own group


def test_explicit_base_classes():
    built = _build(6, base_classes=["class_001", "class_004", "class_005"])
    assert set(built["train"]["label"]) == {"class 001", "class 004", "class 005"}
    with pytest.raises(ValueError, match="base_classes names classes not in the data"):
        _build(6, base_classes=["class_001", "dog"])


def test_bad_label_setups_name_what_to_fix():
    with pytest.raises(ValueError, match="label_column"):
        build_classification(_splits(3), ClassificationArguments(label_column="intent"))
    with pytest.raises(ValueError, match="missing from class_names"):
        _build(3, class_names=["class_000", "class_001"])
    with pytest.raises(ValueError, match="at least 2"):
        _build(3, base_to_new=True)  # 2 base classes and 1 new one
    with pytest.raises(ValueError, match="candidate_fraction"):
        ClassificationArguments(candidate_fraction=0)


# --- rewards on hand-written completions ------------------------------------------------------------

GOLD = ["get weather"]
CLASSES = ["play music, get weather, book restaurant"]


@pytest.mark.parametrize(
    ("completion", "fmt", "acc"),
    [
        ("<think>It asks about rain.</think><answer>get weather</answer>", 1.0, 1.0),
        ("<think>rain</think>\n<answer> Get Weather </answer>", 1.0, 1.0),
        ("<think>rain</think><answer>play music</answer>", 1.0, 0.0),
        ("<answer>get weather</answer>", 0.0, 1.0),  # accuracy does not need the format
        ("Sure! <think>x</think><answer>get weather</answer>", 0.0, 1.0),  # text before the tags
        ("<think>x</think><answer>get weather</answer><answer>play music</answer>", 1.0, 0.0),
        ("get weather", 0.0, 0.0),
    ],
)
def test_thinking_rewards(completion, fmt, acc):
    assert cls_format([completion]) == [fmt]
    assert cls_accuracy([completion], label=GOLD) == [acc]


@pytest.mark.parametrize(
    ("completion", "equal", "contains"),
    [
        ("get weather", 1.0, 1.0),
        (" Get_Weather.", 1.0, 1.0),
        ("The intent is get weather", 0.0, 1.0),
        ("get weather or play music", 0.0, 0.0),  # naming a second candidate is not a hit
        ("play music, get weather, book restaurant", 0.0, 0.0),  # neither is listing them all
        ("weather", 0.0, 0.0),
        ("<think>hm</think><answer>get  weather</answer>", 0.0, 1.0),
    ],
)
def test_no_thinking_equality_and_lenient_metric(completion, equal, contains):
    assert cls_equality([completion], label=GOLD) == [equal]
    assert cls_contains([completion], label=GOLD, classes=CLASSES) == [contains]


def test_lenient_metric_without_a_candidate_list_is_plain_containment():
    assert cls_contains(["get weather or play music"], label=GOLD) == [1.0]


def test_a_candidate_inside_the_gold_name_is_not_a_second_mention():
    assert cls_contains(
        ["book restaurant"], label=["book restaurant"], classes=["book, book restaurant"]
    ) == [1.0]


@pytest.mark.parametrize(
    ("completion", "score"),
    [
        ("<think>a</think><answer>b</answer>", 1.0),
        ("<think>a</think> b", 0.5),
        ("<answer>b</answer>", 0.5),
        ("</think><think>", 0.25),  # out of order: only the first one found in order counts
        ("<think><think>a</think>", 0.25),  # a repeated tag earns nothing
        ("plain text", 0.0),
    ],
)
def test_partial_format_credit(completion, score):
    assert cls_tags([completion]) == [score]
