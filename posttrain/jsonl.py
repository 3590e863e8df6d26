"""JSON-lines files that survive a kill: append durably, read back what was whole, rewrite atomically.

A process killed mid-write leaves at most one torn last line. :func:`read_jsonl` cuts it off the file (it was
never acknowledged, so its row is written again by the resumed run) and gives a complete last line its missing
newline, so that the next append starts on a line of its own instead of merging into it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def read_jsonl(path: Path, *, repair: bool = True) -> list[Any]:
    """The whole records of ``path`` (none if it does not exist). With ``repair``, the file is left ending
    after its last whole record, with a newline."""
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[Any] = []
    good = 0
    for line in data.splitlines(keepends=True):
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            break
        records.append(record)
        good += len(line)
    if not repair:
        return records
    if good < len(data):
        logger.warning(
            "%s: dropping a torn last line (%d bytes) left by an interrupted write", path, len(data) - good
        )
        with path.open("r+b") as f:
            f.truncate(good)
    if good and not data[:good].endswith(b"\n"):
        with path.open("ab") as f:
            f.write(b"\n")
    return records


def append_jsonl(path: Path, records: Iterable[Any], *, sync: bool = True) -> None:
    """Append one line per record, flushed (and with ``sync``, on disk) before returning."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        if sync:
            os.fsync(f.fileno())


def rewrite_jsonl(path: Path, records: Iterable[Any]) -> None:
    """Replace ``path`` with ``records`` in one step: a kill leaves the old file or the new one, never half."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
