"""Loading the user's own data: registered names, local files and directories, or anything `datasets` loads.

`load_any` is what recipes call with their ``dataset_name``. A registered name reads the offline cache
and never touches a hub; a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file becomes the "train"
split; a directory is read with ``load_from_disk`` when it was written by ``save_to_disk``, otherwise its
splits are found from file and folder names the way ``datasets.load_dataset(<folder>)`` finds them
(``train.*``, ``test.*``, ``validation.*``, ``train/``..., and all files as "train" when none is named after
a split); anything else goes to ``datasets.load_dataset``, except a near miss of a registered name, which
gets "did you mean" at once instead of a trip to the hub. `require_columns` turns a missing column into an error
that says what to fix. Every error about the data itself is a :class:`DataError` (a missing path stays a
`FileNotFoundError`).
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posttrain.data.registry import load_registered, registered_datasets
from posttrain.errors import DataError

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

__all__ = [
    "DATA_FILE_FORMATS",
    "DataError",
    "check_dataset_reference",
    "load_any",
    "require_columns",
    "resolve_data_path",
]


LIST_DATASETS_HINT = "`posttrain datasets` lists the registered datasets."

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
            raise DataError(f"{source!r} is a registered offline dataset; it takes no config or data_files.")
        return load_registered(source)

    path = Path(source).expanduser()
    if path.exists():
        if path.is_file():
            return _load_file(path)
        return _load_directory(path, config=config, data_files=data_files)
    check_dataset_reference(source, data_files=data_files)

    logger.info("Loading %r with datasets.load_dataset", source)
    try:
        loaded = datasets.load_dataset(source, config, data_files=data_files)
    except (OSError, ValueError) as err:  # no such dataset on the hub, no network, a bad config name
        raise DataError(
            f"Dataset {source!r} is not registered and not a local path, and datasets.load_dataset could not "
            f"load it: {err}",
            hint=LIST_DATASETS_HINT,
        ) from err
    return _as_dataset_dict(loaded, source)


def check_dataset_reference(source: str, *, data_files: DataFiles | None = None) -> None:
    """Refuse at once, without a network call, a dataset reference that can only be a mistake.

    Registered names and existing paths pass. A path that looks local but does not exist raises
    `FileNotFoundError`. A bare name (no ``owner/``) close to a registered one (a typo, e.g. ``gsm_symbolc``)
    raises a :class:`DataError` that names the registered one, rather than waiting on the hub's retries; so does
    any name left for the hub when ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` is set. Other names go to
    ``datasets.load_dataset``.
    """
    if source in registered_datasets() or Path(source).expanduser().exists():
        return
    if _looks_local(source):
        path = Path(source).expanduser()
        raise FileNotFoundError(f"Dataset path {source!r} does not exist (resolved to {path.resolve()}).")
    if data_files is not None and source in _packaged_builders():
        return
    names = sorted(registered_datasets())
    close = difflib.get_close_matches(source, names, n=1, cutoff=0.6) if "/" not in source else []
    if close:
        raise DataError(
            f"Unknown dataset {source!r}: it is not registered and not a local file or folder. Did you mean "
            f"{close[0]!r}? Registered datasets: {', '.join(names)}.",
            hint=LIST_DATASETS_HINT,
        )
    if _hub_offline():
        raise DataError(
            f"Unknown dataset {source!r}: it is not registered and not a local path, and the hub is offline "
            f"(HF_HUB_OFFLINE/HF_DATASETS_OFFLINE). Registered datasets: {', '.join(names)}.",
            hint=LIST_DATASETS_HINT,
        )


def resolve_data_path(source: str, base_dir: Path) -> str:
    """A dataset path in a recipe, read relative to the recipe's folder, as reward files are.

    Registered names, hub ids and absolute paths are returned as they are. A relative path that exists beside
    the recipe becomes that path. One found only from the current directory (how paths were read before) is
    still used, with a warning that says how to write it.
    """
    if source in registered_datasets() or os.path.isabs(os.path.expanduser(source)):
        return source
    beside = base_dir / source
    if beside.exists():
        return str(beside)
    if Path(source).exists():
        logger.warning(
            "Dataset path %r is not in the recipe's folder %s but in the current directory: paths in a recipe are "
            "read relative to the recipe, as reward files are; write %r.",
            source,
            base_dir,
            os.path.relpath(Path(source).resolve(), base_dir.resolve()),
        )
        return str(Path(source).resolve())
    return source


def _blank(path: Path, probe: int = 1 << 16) -> bool:
    """Whether a file holds nothing but whitespace (read only when it is small enough to be)."""
    if path.stat().st_size > probe:
        return False
    return not path.read_bytes().strip()


def _packaged_builders() -> set[str]:
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return set(_PACKAGED_DATASETS_MODULES)


def _hub_offline() -> bool:
    return any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def require_columns(dataset: Any, columns: Iterable[str], *, what: str) -> None:
    """Raise :class:`DataError` unless ``dataset`` (a Dataset or every split of a DatasetDict) has ``columns``.

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
            raise DataError(
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
        raise DataError(
            f"Cannot load {str(path)!r}: supported data files end in {', '.join(DATA_FILE_FORMATS)}."
        ) from None


def _load_file(path: Path) -> datasets.DatasetDict:
    """A single data file becomes the "train" split. An empty or unreadable file is a :class:`DataError` that
    names it (``datasets`` answers an empty JSONL file with a bare ``StopIteration``)."""
    import datasets

    builder = _builder_for(path)
    if _blank(path):
        raise DataError(f"Dataset file {str(path)!r} is empty: it has no rows to train or evaluate on.")
    try:
        loaded = datasets.load_dataset(builder, data_files={"train": str(path)})
    except (datasets.exceptions.DatasetGenerationError, StopIteration, ValueError) as err:
        cause = err.__cause__ or err
        where = _first_bad_json_line(path) if path.suffix.lower() == ".jsonl" else None
        raise DataError(
            f"Dataset file {str(path)!r} cannot be read as {builder}: "
            + (where or f"{type(cause).__name__}: {cause}")
        ) from err
    return _as_dataset_dict(loaded, str(path))


def _first_bad_json_line(path: Path) -> str | None:
    """``line N is not a JSON object: <why>`` for the first such line of a JSON Lines file (None if all are)."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                return f"line {number} is not valid JSON ({err.msg} at column {err.colno})."
            if not isinstance(row, dict):
                return f"line {number} is a JSON {type(row).__name__}, not an object of column: value."
    return None


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
        raise DataError(
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
