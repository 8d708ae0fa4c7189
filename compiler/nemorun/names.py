"""What job, experiment and task names may be, in a module that imports nothing heavy.

Why its own module: the record store checks names, and ``--help``/TAB load the store (for
``NEMORUN_HOME``); the schemas that also check them import OmegaConf, which those never need.
Names become folder names in NEMORUN_HOME, file names, comments in scripts and parts of backend
names, so no separators, quotes or spaces.
"""
from __future__ import annotations

import re
from typing import Any

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters"


def check_name(what: str, value: Any) -> None:
    """Refuse anything but a plain name (experiment, task, job, cluster names)."""
    if value is None:
        return
    if not isinstance(value, str) or not NAME.fullmatch(value):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 100 else f"{value[:100]!r}... ({len(value)} characters)"
        raise ValueError(f"{what} must be a name: {NAME_RULE} (got {shown})")
