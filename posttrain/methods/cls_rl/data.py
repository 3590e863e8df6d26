"""Few-shot classification prompts from any labelled dataset (CLS-RL's data builder).

Given a dataset with a label column, :func:`build_classification` returns the same splits with four new
columns that a prompt template and the classification rewards read:

- ``label``: the gold class name, normalised (``golden_retriever`` -> ``golden retriever`` by default). A
  ``ClassLabel`` column (``imagefolder`` datasets, most hub datasets) is read as its class names, not ints;
- ``classes``: a shuffled, comma-separated candidate list that always holds the gold class. Its size follows
  CLS-RL: every class name of the row's group when the group has fewer than ``candidate_all_below``
  (30) classes, otherwise ``candidate_fraction`` (40%) of them, never more than ``candidate_max`` (100);
- ``class_group``: ``"base"`` or ``"new"``. Training keeps base classes only; test rows of new classes are
  scored against new-class candidates, so base and new accuracy can be reported apart
  (``group_by: class_group`` in an evaluation);
- ``random_class``: one of the row's candidates drawn at random, independent of the label: for answer-format
  demonstrations that teach no class (the thinking CLS-RL recipe's format warm start).

The training split can be cut to ``shots_per_class`` rows per class. Every random choice is keyed by
``class_seed`` and the row itself, never by the order rows are visited, so training, the held-out check and
``posttrain eval`` build identical prompts for the same row.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections import defaultdict
from typing import Any

from datasets import ClassLabel, Dataset, DatasetDict, Value

from posttrain.data import require_columns
from posttrain.methods.cls_rl.config import ClassificationArguments

logger = logging.getLogger(__name__)

GROUPS = ("base", "new")


def normalize_label(value: Any, underscores_to_spaces: bool = True) -> str:
    text = str(value).strip()
    return text.replace("_", " ") if underscores_to_spaces else text


def candidate_count(num_classes: int, fraction: float = 0.4, all_below: int = 30, maximum: int = 100) -> int:
    """How many class names a prompt lists, the gold one included."""
    if num_classes < all_below:
        return min(num_classes, maximum)
    return max(2, min(maximum, math.ceil(fraction * num_classes)))


def candidates_for(gold: str, pool: list[str], count: int, rng: random.Random) -> list[str]:
    """``count`` names from ``pool``: the gold one plus a random sample of the others, shuffled."""
    others = [name for name in pool if name != gold]
    chosen = rng.sample(others, min(count - 1, len(others))) + [gold]
    rng.shuffle(chosen)
    return chosen


def _row_rng(seed: int, *parts: Any) -> random.Random:
    key = "\x1f".join(str(p) for p in (seed, *parts))
    return random.Random(int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big"))


def _row_key(row: dict[str, Any]) -> str:
    """What identifies a row for seeding: its text-like columns, and a digest of each image's pixels.

    Without the images, every image of a class would share one key (the label is often the only text), so
    one class would always get the same candidate order: a shortcut to the answer that skips the image.
    """
    parts = []
    for k, v in sorted(row.items()):
        if isinstance(v, (str, int, float)):
            parts.append(f"{k}={v}")
        elif _is_image(v):
            parts.append(f"{k}={hashlib.sha256(v.tobytes()).hexdigest()}")
    return "\x1e".join(parts)


def _is_image(value: Any) -> bool:
    return type(value).__module__.startswith("PIL.") and hasattr(value, "tobytes")


def class_label_names(split: Dataset, column: str) -> Dataset:
    """A ``ClassLabel`` column (ints) as its class names, so prompts and rewards see ``"cat"``, not ``3``."""
    feature = split.features.get(column)
    if not isinstance(feature, ClassLabel):
        return split
    names = feature.names

    def to_names(labels: list[int | None]) -> dict[str, list[str]]:
        if any(label is None or label < 0 for label in labels):
            raise ValueError(f"Column {column!r} has unlabelled rows (-1); drop them before classification.")
        return {column: [names[label] for label in labels]}

    features = split.features.copy()
    features[column] = Value("string")
    return split.map(
        to_names, input_columns=[column], batched=True, features=features, desc=f"Class names of {column!r}"
    )


def class_groups(classes: list[str], data: ClassificationArguments) -> dict[str, str]:
    """Class name -> "base" or "new" from ``base_classes`` or ``base_to_new``."""
    if data.base_classes:
        base = [normalize_label(c, data.underscores_to_spaces) for c in data.base_classes]
        unknown = sorted(set(base) - set(classes))
        if unknown:
            raise ValueError(
                f"base_classes names classes not in the data: {unknown}. Known classes: {classes}."
            )
        return {c: "base" if c in base else "new" for c in classes}
    if data.base_to_new:
        half = math.ceil(len(classes) / 2)
        return {c: "base" if i < half else "new" for i, c in enumerate(classes)}
    return dict.fromkeys(classes, "base")


def build_classification(
    splits: DatasetDict, data: ClassificationArguments, *, train_split: str = "train"
) -> DatasetDict:
    """Classification prompts for every split of ``splits``, as ``data`` (the builder's fields) says."""
    column = data.label_column
    if not column:
        raise ValueError(
            "data_builder classification needs label_column: the dataset column holding each row's class."
        )
    for name, split in splits.items():
        require_columns(split, [column], what=f"label_column (split {name!r})")
    splits = DatasetDict({name: class_label_names(split, column) for name, split in splits.items()})
    norm = data.underscores_to_spaces
    found = sorted({normalize_label(v, norm) for split in splits.values() for v in split[column]})
    if data.class_names:
        classes = [normalize_label(c, norm) for c in data.class_names]
        stray = sorted(set(found) - set(classes))
        if stray:
            raise ValueError(
                f"Column {column!r} holds labels missing from class_names: {stray[:10]}"
                f"{' ...' if len(stray) > 10 else ''}. Add them to class_names or filter the data."
            )
    else:
        classes = found
    if len(classes) < 2:
        raise ValueError(
            f"Column {column!r} holds {len(classes)} class(es); classification needs at least 2."
        )
    groups = class_groups(classes, data)
    pools = {g: [c for c in classes if groups[c] == g] for g in GROUPS}
    if len(pools["base"]) < 2 or 0 < len(pools["new"]) < 2:
        raise ValueError(
            f"Each class group needs at least 2 classes; base has {len(pools['base'])}, new {len(pools['new'])}."
        )
    counts = {
        g: candidate_count(len(pool), data.candidate_fraction, data.candidate_all_below, data.candidate_max)
        for g, pool in pools.items()
    }

    def annotate(row: dict[str, Any], split_name: str) -> dict[str, Any]:
        gold = normalize_label(row[column], norm)
        group = groups[gold]
        rng = _row_rng(data.class_seed, split_name, _row_key(row))
        names = candidates_for(gold, pools[group], counts[group], rng)
        # Drawn after the candidate list, so adding it left every existing prompt unchanged.
        pick = rng.choice(names)
        return {"label": gold, "classes": ", ".join(names), "class_group": group, "random_class": pick}

    built = {}
    for name, split in splits.items():
        if name == train_split:
            split = _few_shot(split, column, groups, data)
        built[name] = split.map(
            annotate, fn_kwargs={"split_name": name}, desc=f"Classification prompts ({name})"
        )
    logger.info(
        "Classification: %d classes (%d base, %d new), %s candidates per prompt, train %d rows",
        len(classes),
        len(pools["base"]),
        len(pools["new"]),
        "/".join(str(counts[g]) for g in GROUPS if pools[g]),
        len(built[train_split]) if train_split in built else 0,
    )
    return DatasetDict(built)


def _few_shot(split: Dataset, column: str, groups: dict[str, str], data: ClassificationArguments) -> Dataset:
    """Base-class rows only, then ``shots_per_class`` per class chosen by a seeded hash of each row."""
    by_class: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for index, row in enumerate(split):
        gold = normalize_label(row[column], data.underscores_to_spaces)
        if groups[gold] == "base":
            order = hashlib.sha256(f"{data.class_seed}\x1f{_row_key(row)}".encode()).hexdigest()
            by_class[gold].append((order, index))
    short = {
        c: len(rows)
        for c, rows in by_class.items()
        if data.shots_per_class and len(rows) < data.shots_per_class
    }
    missing = [c for c, g in groups.items() if g == "base" and c not in by_class]
    if missing:
        raise ValueError(f"The training split has no rows of base class(es) {missing}.")
    if short:
        logger.warning("Fewer than %d training rows for %s; using all of them.", data.shots_per_class, short)
    keep = []
    for gold in sorted(by_class):
        rows = sorted(by_class[gold])
        keep += [index for _, index in rows[: data.shots_per_class or len(rows)]]
    return split.select(sorted(keep))
