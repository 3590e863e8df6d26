"""Loading the user's own data: registered names, local files and directories, or anything `datasets` loads.

`load_any` is what recipes call with their ``dataset_name``. A registered name reads the offline cache
and never touches a hub; a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file becomes the "train"
split; a directory gives one split per ``train.*``/``test.*``/``validation.*`` file, or is read with
``load_from_disk`` when it was written by ``save_to_disk``; anything else goes to
``datasets.load_dataset``. `require_columns` turns a missing column into an error that says what to fix.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posttrain.data.registry import load_registered, registered_datasets

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

__all__ = ["DATA_FILE_FORMATS", "load_any", "require_columns"]

# File suffix -> the `datasets` packaged builder that reads it.
DATA_FILE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
# Files written by `save_to_disk` (DatasetDict, Dataset); their presence means "use load_from_disk".
SAVED_DATASET_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")
SPLIT_FILE_STEMS = ("train", "validation", "test")

DataFiles = str | Sequence[str] | Mapping[str, str | Sequence[str]]


def load_any(
    source: str, *, config: str | None = None, data_files: DataFiles | None = None
) -> datasets.DatasetDict:
    """Load ``source`` as a ``datasets.DatasetDict``.

    ``source`` is, in order of precedence: a registered offline dataset name (see
    `registered_datasets`); a local data file or directory; otherwise a name or path understood by
    ``datasets.load_dataset(source, config, data_files=...)`` (a hub id, a packaged builder such as
    "json" with ``data_files``, or a dataset script directory). A path that looks local (absolute,
    starting with ``.`` or ``~``, or ending in a data-file suffix) but does not exist raises
    `FileNotFoundError`.
    """
    import datasets

    if source in registered_datasets():
        if config is not None or data_files is not None:
            raise ValueError(f"{source!r} is a registered offline dataset; it takes no config or data_files.")
        return load_registered(source)

    path = Path(source).expanduser()
    if path.exists():
        if path.is_file():
            return _load_file(path)
        return _load_directory(path, config=config, data_files=data_files)
    if _looks_local(source):
        raise FileNotFoundError(f"Dataset path {source!r} does not exist (resolved to {path.resolve()}).")

    logger.info("Loading %r with datasets.load_dataset", source)
    loaded = datasets.load_dataset(source, config, data_files=data_files)
    return _as_dataset_dict(loaded, source)


def require_columns(dataset: Any, columns: Iterable[str], *, what: str) -> None:
    """Raise `ValueError` unless ``dataset`` (a Dataset or every split of a DatasetDict) has ``columns``.

    ``what`` names the consumer, e.g. "the GRPO accuracy reward", and ends the message:
    ``Split 'train' is missing column(s) 'answer' needed by the GRPO accuracy reward; available
    columns: 'question', 'solution'``.
    """
    needed = list(dict.fromkeys(columns))
    if isinstance(dataset, Mapping):  # DatasetDict (a dict of split name -> Dataset)
        parts = [(f"Split {split!r}", ds.column_names) for split, ds in dataset.items()]
    else:
        parts = [("Dataset", dataset.column_names)]
    for label, available in parts:
        missing = [c for c in needed if c not in available]
        if missing:
            raise ValueError(
                f"{label} is missing column(s) {_quoted(missing)} needed by {what}; "
                f"available columns: {_quoted(available) or '(none)'}"
            )


def _quoted(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _looks_local(source: str) -> bool:
    # "org/name" is a hub id, so a slash alone does not make a path; these forms only make sense locally.
    return (
        os.path.isabs(source)
        or source.startswith((".", "~"))
        or Path(source).suffix.lower() in DATA_FILE_FORMATS
    )


def _builder_for(path: Path) -> str:
    try:
        return DATA_FILE_FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"Cannot load {str(path)!r}: supported data files end in {', '.join(DATA_FILE_FORMATS)}."
        ) from None


def _load_file(path: Path) -> datasets.DatasetDict:
    """A single data file becomes the "train" split."""
    import datasets

    loaded = datasets.load_dataset(_builder_for(path), data_files={"train": str(path)})
    return _as_dataset_dict(loaded, str(path))


def _load_directory(path: Path, *, config: str | None, data_files: DataFiles | None) -> datasets.DatasetDict:
    import datasets

    if any((path / marker).is_file() for marker in SAVED_DATASET_MARKERS):
        return _as_dataset_dict(datasets.load_from_disk(str(path)), str(path))

    split_files = {
        stem: [
            p
            for p in sorted(path.iterdir())
            if p.is_file() and p.stem == stem and p.suffix.lower() in DATA_FILE_FORMATS
        ]
        for stem in SPLIT_FILE_STEMS
    }
    split_files = {split: files for split, files in split_files.items() if files}
    if split_files and data_files is None:
        for split, files in split_files.items():
            if len(files) > 1:
                raise ValueError(
                    f"{path} has several {split} files ({', '.join(f.name for f in files)}); keep one."
                )
        builders = {_builder_for(files[0]) for files in split_files.values()}
        if len(builders) > 1:
            raise ValueError(f"{path} mixes data file formats ({', '.join(sorted(builders))}); use one.")
        loaded = datasets.load_dataset(
            builders.pop(), data_files={split: str(files[0]) for split, files in split_files.items()}
        )
        return _as_dataset_dict(loaded, str(path))

    # No train/test files: a dataset script or repository layout that `datasets` understands.
    return _as_dataset_dict(datasets.load_dataset(str(path), config, data_files=data_files), str(path))


def _as_dataset_dict(loaded: Any, source: str) -> datasets.DatasetDict:
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        return loaded
    if isinstance(loaded, datasets.Dataset):
        return datasets.DatasetDict({"train": loaded})
    raise TypeError(f"Loading {source!r} gave {type(loaded).__name__}, expected a Dataset or DatasetDict.")
