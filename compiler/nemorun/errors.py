"""Errors a user can act on. The CLI prints each as one line ``nemorun: error: ...``.

Exit status: 2 for anything wrong with what the user asked (config, rendered artifact that
fails validation), 1 for the outside world refusing it (backend unreachable, submission rejected).
"""
from __future__ import annotations


class NemorunError(Exception):
    exit_code = 1


class ConfigError(NemorunError):
    """The composed config cannot describe a job: typo, wrong type, missing value, bad task."""

    exit_code = 2


class ArtifactError(NemorunError):
    """A rendered artifact failed validation: caught here rather than by the cluster."""

    exit_code = 2


class SubmitError(NemorunError):
    """The backend refused the job or could not be reached."""

    exit_code = 1


class StoreError(NemorunError, OSError):
    """The experiment store (``NEMORUN_HOME``) cannot be written: full disk, read-only, no permission.

    Also an ``OSError``, so code that treats an unwritable cache as a miss keeps doing so.
    """

    exit_code = 1


class DamagedRecordError(StoreError):
    """A file of an experiment record is not what nemorun wrote (truncated, edited, unreadable)."""


def one_line(text: str) -> str:
    """Collapse a multi-line message into one line (messages from Hydra, Slurm, APIs)."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    return "; ".join(parts)
