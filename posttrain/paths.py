"""Filesystem locations shared by posttrain's data and model code.

Everything posttrain downloads or converts lives under one cache directory, chosen by the
``POSTTRAIN_CACHE`` environment variable (default ``~/.cache/posttrain``), so a cluster can point all
processes at one shared disk and tests can point it at a temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """Return the root of posttrain's cache (read from ``POSTTRAIN_CACHE`` at every call)."""
    # Read the variable on every call rather than at import time so that tests and launchers can
    # redirect the cache after posttrain has been imported.
    return Path(os.environ.get("POSTTRAIN_CACHE", "~/.cache/posttrain")).expanduser()
