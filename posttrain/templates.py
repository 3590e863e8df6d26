"""Prompt and completion templates: Python format strings over a dataset row's columns."""

from __future__ import annotations

import string


def template_columns(template: str | None) -> set[str]:
    """The column names a format string reads (``'{question}'`` -> ``{'question'}``)."""
    if not template:
        return set()
    names = set()
    for _, name, _, _ in string.Formatter().parse(template):
        if name:
            names.add(name.split(".", 1)[0].split("[", 1)[0])
    return names
