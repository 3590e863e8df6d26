"""Loading the user's own data: registered names, local files and directories, or anything `datasets` loads.

`load_any` is what recipes call with their ``dataset_name``. A registered name reads the offline cache
and never touches a hub; a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file becomes the "train"
split; a directory is read with ``load_from_disk`` when it was written by ``save_to_disk``, otherwise its
splits are found from file and folder names the way ``datasets.load_dataset(<folder>)`` finds them
(``train.*``, ``test.*``, ``validation.*``, ``train/``..., and all files as "train" when none is named after
a split); anything else goes to ``datasets.load_dataset``. `require_columns` turns a missing column into an
error that says what to fix.
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
    if config is None and data_files is None:
        data_files = _split_files(path)
    return _as_dataset_dict(datasets.load_dataset(str(path), config, data_files=data_files), str(path))


def _split_files(path: Path) -> dict[str, list[str]]:
    """The data files of each split of folder ``path``, found by the rules of ``datasets.load_dataset``.

    Files and folders named after a split (``train.jsonl``, ``test-0.csv``, ``validation/``; also the
    synonyms ``training``, ``dev``, ``val``, ``eval`` ...) give that split; with none, every file is "train".
    A folder with no file ``datasets`` can read raises `FileNotFoundError` saying what was looked for.
    """
    from datasets.data_files import DataFilesDict, EmptyDatasetError, get_data_patterns
    from datasets.exceptions import DataFilesNotFoundError
    from datasets.load import infer_module_for_data_files

    try:
        resolved = DataFilesDict.from_patterns(get_data_patterns(str(path)), base_path=str(path))
    except EmptyDatasetError:
        raise FileNotFoundError(_no_data_files(path)) from None
    split_files = {str(split): list(files) for split, files in resolved.items()}
    _check_one_format(path, split_files)
    try:
        infer_module_for_data_files(resolved, str(path))
    except DataFilesNotFoundError:
        found = ", ".join(Path(f).name for files in split_files.values() for f in files)
        raise FileNotFoundError(f"{_no_data_files(path)} It holds only {found}.") from None
    return split_files


def _check_one_format(path: Path, split_files: Mapping[str, Sequence[str]]) -> None:
    """Refuse a folder whose splits hold tabular files of different formats (``datasets`` reads one)."""
    builders = {
        DATA_FILE_FORMATS[Path(file).suffix.lower()]
        for files in split_files.values()
        for file in files
        if Path(file).suffix.lower() in DATA_FILE_FORMATS
    }
    if len(builders) > 1:
        listing = "; ".join(
            f"{split}: {', '.join(Path(f).name for f in files)}" for split, files in split_files.items()
        )
        raise ValueError(
            f"{path} mixes data file formats ({', '.join(sorted(builders))}) in {listing}; use one."
        )


def _no_data_files(path: Path) -> str:
    return (
        f"{path} has no data files: looked for train.*, validation.* and test.* files (or any "
        f"{'/'.join(sorted(set(DATA_FILE_FORMATS)))} file) and for a save_to_disk dataset "
        f"({', '.join(SAVED_DATASET_MARKERS)})."
    )


def _as_dataset_dict(loaded: Any, source: str) -> datasets.DatasetDict:
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        return loaded
    if isinstance(loaded, datasets.Dataset):
        return datasets.DatasetDict({"train": loaded})
    raise TypeError(f"Loading {source!r} gave {type(loaded).__name__}, expected a Dataset or DatasetDict.")
