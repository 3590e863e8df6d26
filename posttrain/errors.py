"""Errors the user can fix, and how the command line tells them apart from bugs.

A :class:`UserError` is bad input: a recipe, an evaluation, a data file, a model, dataset or reward reference.
Its message says what is wrong and what to change; ``posttrain`` prints that message alone and exits with
status 2. Any other exception is a bug in posttrain (or a library) and keeps its traceback.

This module imports nothing, so the command line can know these types without loading the training stack.
"""

from __future__ import annotations


class UserError(Exception):
    """Input the user can fix; the message says what to change, ``hint`` (optional) where to look next."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class DataError(UserError, ValueError):
    """Data that cannot be used as named: an unknown dataset, an unreadable or empty file, a missing column."""
