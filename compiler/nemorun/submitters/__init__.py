"""One module per backend that applies rendered artifacts and answers for the jobs it started.

Every module satisfies :class:`nemorun.submitters.base.Submitter` (submit/status/logs/cancel)
and declares in ``FEATURES`` which optional functions it has. The helpers here are the only
way the core reaches a backend's optional functions: they read the declaration, so a backend
that forgets to declare a function is caught by a test instead of silently skipped.

The order the core follows per job: :func:`resolve` (ids only the service knows) → render →
validate → record the artifacts → ``submit(rendered, job)``. :func:`prepare` does the first
three steps, for callers that record and submit themselves.

SDKs are imported inside the backends' functions, never at module import.
"""
from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Optional, cast

from nemorun.errors import ConfigError, NemorunError
from nemorun.store import atomic_write, atomic_write_many
from nemorun.targets import target_module
from nemorun.submitters.base import Submitter, SubmitterFeatures

if TYPE_CHECKING:
    from nemorun.ir import Job, Rendered
    from nemorun.states import Handle

SUBMITTER_MODULES: dict[str, str] = {
    "local": "nemorun.submitters.local",
    "slurm": "nemorun.submitters.slurm",
    "docker": "nemorun.submitters.docker",
    "kubeflow": "nemorun.submitters.kubeflow",
    "skypilot": "nemorun.submitters.skypilot",
    "dgxcloud": "nemorun.submitters.dgxcloud",
    "lepton": "nemorun.submitters.lepton",
}
# a finished remote job's output, copied into its record folder when its backend has no fetch_logs
SYNCED_LOG = "output.log"
LOG_FILES = ("stdout.log", "stderr.log")

__all__ = [
    "SUBMITTER_MODULES", "Submitter", "SubmitterFeatures", "submitter", "submitter_module", "features",
    "resolve", "prepare", "find", "follow", "echo", "fetch_logs", "sync_logs", "sync_logs_many", "array_task_handle", "step_handle",
]  # fmt: skip


def submitter(kind: str) -> Submitter:
    """The backend module of executor ``kind`` (imported on first use)."""
    try:
        name = SUBMITTER_MODULES[kind]
    except KeyError:
        raise ConfigError(f"no submitter for executor kind '{kind}' (known: {', '.join(SUBMITTER_MODULES)})") from None
    return cast(Submitter, importlib.import_module(name))


# the name callers used before the Protocol existed
submitter_module = submitter


def features(kind: str) -> SubmitterFeatures:
    return submitter(kind).FEATURES


def resolve(job: "Job") -> "Job":
    """``job`` with the ids only its service knows filled in (may contact the service and raise
    SubmitError); the job itself for backends that need nothing looked up."""
    module = submitter(job.target)
    if not module.FEATURES.resolve:
        return job
    return cast("Job", module.resolve(job))  # type: ignore[attr-defined]


def prepare(job: "Job") -> "tuple[Job, Rendered]":
    """Resolve, render, validate: the job and the artifacts to record and then submit, unchanged.
    Writes nothing; a dry run renders without this (no service is contacted)."""
    job = resolve(job)
    target = target_module(job.target)
    rendered: Rendered = target.render(job)
    target.validate(rendered)
    return job, rendered


def find(job: "Job") -> "Optional[Handle]":
    """The handle of ``job`` if a submission left in doubt by a crash did happen, else None.
    Raises LookupError when the backend cannot tell (then only resubmitting is left)."""
    module = submitter(job.target)
    if not module.FEATURES.find:
        raise LookupError(f"the {job.target} submitter cannot find a job it may have submitted")
    return cast("Optional[Handle]", module.find(job))  # type: ignore[attr-defined]


def array_task_handle(handle: "Handle", index: int) -> "Handle":
    """The handle of task ``index`` of an array job (status, logs and cancel per task)."""
    module = submitter(handle.backend)
    if not module.FEATURES.array_task_handle:
        raise LookupError(f"the {handle.backend} submitter has no array tasks")
    return cast("Handle", module.array_task_handle(handle, index))  # type: ignore[attr-defined]


def step_handle(handle: "Handle", step: str) -> "Handle":
    """The handle of task ``step`` run as a step of an allocation's job (nemorun.allocations)."""
    module = submitter(handle.backend)
    if not hasattr(module, "step_handle"):
        raise LookupError(f"the {handle.backend} submitter has no job steps")
    return cast("Handle", module.step_handle(handle, step))


def follow(handle: "Handle") -> "Iterator[tuple[str, str]]":
    """``(stream, line)`` pairs until the job ends, stream being ``stdout`` or ``stderr``.

    Backends declaring ``stream`` keep the two apart; for the others every line of
    ``logs(handle, follow=True)`` is reported as stdout.
    """
    module = submitter(handle.backend)
    if module.FEATURES.stream:
        return cast("Iterator[tuple[str, str]]", module.stream(handle))  # type: ignore[attr-defined]
    return (("stdout", line) for line in module.logs(handle, follow=True))


def echo(pairs: "Iterable[tuple[str, str]]") -> None:
    """Write followed lines to our own stdout/stderr as they come (``wait=true``, ``exp logs -f``)."""
    import sys

    for stream, line in pairs:
        target = sys.stderr if stream == "stderr" else sys.stdout
        target.write(line)
        target.flush()


def fetch_logs(handle: "Handle", dest_dir: Path) -> None:
    """Copy a job's output into ``dest_dir``: the backend's own ``fetch_logs`` (``stdout.log`` and
    ``stderr.log``) where declared, else what ``logs(handle)`` returns as ``output.log``.
    Raises what the backend raises."""
    module = submitter(handle.backend)
    if module.FEATURES.fetch_logs:
        atomic_write_many(module.fetch_logs([(handle, Path(dest_dir))]), Path(dest_dir))  # type: ignore[attr-defined]
    else:
        atomic_write(Path(dest_dir) / SYNCED_LOG, "".join(module.logs(handle, follow=False)))


def sync_logs(handle: "Handle", job_dir: Path) -> None:
    """Keep a finished remote job's logs in its record folder (clusters purge theirs).

    Once only (a folder holding logs is left alone), and never fatal: a failed copy leaves
    ``exp logs`` asking the backend.
    """
    sync_logs_many([(handle, job_dir)])


def sync_logs_many(jobs: Iterable[tuple["Handle", Path]]) -> None:
    """:func:`sync_logs` for many jobs (a finished 1,000-task array): each backend is handed all
    of its jobs at once (``fetch_logs``), and every copy is written as one batch
    (:func:`nemorun.store.atomic_write_many`), not an fsync each. What a backend kept by a hard
    link is made durable by the caller's next batch sync (:func:`nemorun.tracking.refresh`
    writes the ended jobs' records right after, on the same file system)."""
    batch: list[tuple[Path, str | bytes]] = []
    by_backend: dict[str, list[tuple["Handle", Path]]] = {}
    for handle, job_dir in jobs:
        job_dir = Path(job_dir)
        if not any((job_dir / f).exists() for f in (*LOG_FILES, SYNCED_LOG)):
            by_backend.setdefault(handle.backend, []).append((handle, job_dir))
    for backend, group in by_backend.items():
        module = submitter(backend)
        if module.FEATURES.fetch_logs:
            with contextlib.suppress(NemorunError, OSError):
                batch.extend(module.fetch_logs(group))  # type: ignore[attr-defined]
            continue
        for handle, job_dir in group:
            try:
                batch.append((job_dir / SYNCED_LOG, "".join(module.logs(handle, follow=False))))
            except (NemorunError, OSError):
                pass
    if batch:
        with contextlib.suppress(NemorunError, OSError):
            atomic_write_many(batch, batch[0][0].parent)
