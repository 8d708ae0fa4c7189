"""The one interface every backend module offers, and the optional extras it declares.

A backend is a plain module (``nemorun.submitters.<kind>``), not a class: a module satisfies a
:class:`typing.Protocol` structurally, so type checkers hold each backend to :class:`Submitter`
without a base class to stub. What a backend can do beyond the four required functions is
*declared* in its ``FEATURES`` rather than discovered with ``hasattr``: the core dispatches on the
declaration (``nemorun.submitters.follow``, ``find``, ...), and a test holds every module to
declaring exactly the optional functions it defines, with the signatures below.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Protocol, Sequence

if TYPE_CHECKING:
    from nemorun.ir import Job, Rendered
    from nemorun.states import Handle, JobStatus


@dataclass(frozen=True)
class SubmitterFeatures:
    """Which optional functions a backend module defines (each flag names one, see :class:`OptionalFunctions`).

    - ``stream``: ``stream(handle)`` keeps stdout and stderr apart while following a job;
      without it every followed line counts as stdout.
    - ``fetch_logs``: ``fetch_logs([(handle, dest_dir), ...])`` keeps finished jobs' output as
      ``stdout.log``/``stderr.log`` for many jobs at once (a 1,000-task array): what it can keep
      without writing (a hard link) it keeps, the rest it returns as ``(path, bytes)`` for ONE
      batch write; without it the record keeps what ``logs(handle)`` returns, as ``output.log``.
    - ``find``: ``find(job)`` says whether a submission that a crash left in doubt happened;
      without it ``--resume`` submits such a job again.
    - ``array_task_handle``: ``array_task_handle(handle, index)`` names one task of an array
      job; required of a backend whose target renders arrays.
    - ``resolve``: ``resolve(job)`` fills ids only the service knows (a project or node group
      id) into the job BEFORE it is rendered, so the artifact recorded and sent holds them.
    """

    stream: bool = False
    fetch_logs: bool = False
    find: bool = False
    array_task_handle: bool = False
    resolve: bool = False

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def declared(self) -> frozenset[str]:
        return frozenset(name for name in self.names() if getattr(self, name))


class Submitter(Protocol):
    """What the core calls on every backend.

    - ``submit`` sends exactly ``rendered``'s artifacts (never renders, never writes the
      experiment record) and raises :class:`~nemorun.errors.SubmitError` with the backend's
      own message, on one line, when refused or unreachable.
    - ``status`` answers for many handles in as few calls as the backend allows; a handle the
      backend does not know is UNKNOWN (or a terminal state), never an exception.
    - ``logs`` yields the job's output line by line; ``follow`` until the job ends.
    - ``cancel`` is idempotent: a finished or vanished job is left alone.

    SDKs are imported inside these functions, never at module import, so a dry run needs none.
    """

    FEATURES: SubmitterFeatures

    def submit(self, rendered: "Rendered", job: "Job") -> "Handle": ...

    def status(self, handles: "Sequence[Handle]") -> "dict[str, JobStatus]": ...

    def logs(self, handle: "Handle", follow: bool = False) -> "Iterator[str]": ...

    def cancel(self, handle: "Handle") -> None: ...


class OptionalFunctions(Protocol):
    """The signatures of the optional functions (one per :class:`SubmitterFeatures` flag)."""

    def stream(self, handle: "Handle") -> "Iterator[tuple[str, str]]": ...

    def fetch_logs(self, jobs: "Sequence[tuple[Handle, Path]]") -> "list[tuple[Path, bytes]]": ...

    def find(self, job: "Job") -> "Optional[Handle]": ...

    def array_task_handle(self, handle: "Handle", index: int) -> "Handle": ...

    def resolve(self, job: "Job") -> "Job": ...


REQUIRED: tuple[str, ...] = ("submit", "status", "logs", "cancel")
