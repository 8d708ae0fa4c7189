"""What a recorded experiment's jobs are doing now: one backend query per backend, recorded.

Shared by ``nemorun exp status`` (through :mod:`nemorun.api`), ``wait=true`` and a launch that
waits for upstream jobs before submitting the next: every state seen is written into the job's
record and the catalog row, so the record and ``exp list`` never disagree.
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

from nemorun import catalog, submitters
from nemorun.states import AppState, Handle, JobStatus
from nemorun.store import ExperimentRecord, JobRecord

POLL_SECONDS = 1.0


def refresh(record: ExperimentRecord, jobs: Sequence[JobRecord]) -> dict[str, JobStatus]:
    """Live states of ``jobs``: ONE ``status`` call per backend for all of its handles.

    A job that turns terminal on a remote backend gets its logs copied into its folder
    (clusters purge theirs).
    """
    out: dict[str, JobStatus] = {}
    by_backend: dict[str, list[tuple[JobRecord, Handle]]] = {}
    for rec in jobs:
        handle = rec.handle_obj()
        if handle is None or rec.app_state.is_terminal:
            out[rec.name] = JobStatus(rec.app_state, rec.exit_code, rec.error or rec.detail)
        else:
            by_backend.setdefault(handle.backend, []).append((rec, handle))
    for backend, pairs in by_backend.items():
        states = submitters.submitter(backend).status([h for _, h in pairs])
        for rec, handle in pairs:
            status = states.get(handle.id, JobStatus(AppState.UNKNOWN, None, "not reported by the backend"))
            new = record.record_status(rec.name, status)
            if new.app_state.is_terminal:
                submitters.sync_logs(handle, record.job_dir(rec.name))
            out[rec.name] = JobStatus(new.app_state, new.exit_code, new.detail)
    catalog.refresh(record.path.parent.parent.parent, record)
    return out


def wait(record: ExperimentRecord, names: Optional[Sequence[str]] = None, poll: float = POLL_SECONDS) -> dict[str, JobStatus]:
    """Block until every submitted job (of ``names``, default all) is terminal."""
    wanted = list(names) if names is not None else list(record.meta["jobs"])
    while True:
        jobs = [record.try_job(n) or JobRecord(name=n, target=record.meta["target"]) for n in wanted]
        states = refresh(record, jobs)
        if all(s.state.is_terminal or s.state is AppState.UNSUBMITTED for s in states.values()):
            return states
        time.sleep(poll)


def exit_code(status: JobStatus) -> int:
    """A job's exit code as a process would report it (0 only for a success)."""
    if status.exit_code is not None:
        return status.exit_code
    return 0 if status.state is AppState.SUCCEEDED else 1
