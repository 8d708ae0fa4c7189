"""Errors a user can act on. The CLI prints each as one line ``nemorun: error: ...``.

Exit status: 2 for anything wrong with what the user asked (config, rendered artifact that
fails validation), 1 for the outside world refusing it (backend unreachable, submission rejected).

Every message is scrubbed of the secrets this process holds (:mod:`nemorun.secrets`): a service
that echoes a credential into an error body cannot get it onto stderr or into a record.
"""
from __future__ import annotations

from nemorun import secrets


class NemorunError(Exception):
    exit_code = 1

    def __init__(self, *args: object) -> None:
        # scrubbed here too, not only in __str__: args reach repr(), pickles and logging
        super().__init__(*(secrets.scrub(a) if isinstance(a, str) else a for a in args))

    def __str__(self) -> str:
        return secrets.scrub(super().__str__())


class ConfigError(NemorunError):
    """The composed config cannot describe a job: typo, wrong type, missing value, bad task."""

    exit_code = 2


class ArtifactError(NemorunError):
    """A rendered artifact failed validation: caught here rather than by the cluster."""

    exit_code = 2


class SubmitError(NemorunError):
    """The backend refused the job or could not be reached."""

    exit_code = 1


class DetachedError(NemorunError):
    """Ctrl-C while nemorun waited for submitted jobs: nemorun stops waiting, the jobs run on."""

    exit_code = 130


class StoreError(NemorunError, OSError):
    """The experiment store (``NEMORUN_HOME``) cannot be written: full disk, read-only, no permission.

    Also an ``OSError``, so code that treats an unwritable cache as a miss keeps doing so.
    """

    exit_code = 1


class DamagedRecordError(StoreError):
    """A file of an experiment record is not what nemorun wrote (truncated, edited, unreadable)."""


def printable(text: str) -> str:
    """``text`` with its control characters escaped (``\\x1b``): an error line quotes what the
    user gave (an override, a file name), and an ESC in it must not reach the terminal."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def one_line(text: str) -> str:
    """Collapse a multi-line message into one line (messages from Hydra, Slurm, APIs), scrubbed of
    registered secrets: every message bound for a user or a record passes through here."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    return secrets.scrub("; ".join(parts))
