"""What a recorded experiment's jobs are doing now: one backend query per backend, recorded.

Shared by ``nemorun exp status`` (through :mod:`nemorun.api`), ``wait=true`` and a launch that
waits for upstream jobs before submitting the next: every state seen that changed is written
into the experiment's ``states.json`` (read back through :meth:`ExperimentRecord.job`) and the
catalog row, so the record and ``exp list`` never disagree.
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

from nemorun import catalog, submitters
from nemorun.states import AppState, Handle, JobStatus
from nemorun.store import ExperimentRecord, JobRecord, as_recorded, fault

POLL_SECONDS = 1.0


def refresh(record: ExperimentRecord, jobs: Sequence[JobRecord]) -> dict[str, JobStatus]:
    """Live states of ``jobs``: ONE ``status`` call per backend for all of its handles.

    A job seen ending gets its logs kept in its folder (clusters purge theirs) BEFORE its
    record says it ended: a finished record is never asked about again, so if the status died
    between the two writes the other way round, those logs would never be collected. Kept
    first, a crash only means they are looked for again (and found there) at the next status.

    The states that changed go into the experiment's ``states.json`` (one write per backend
    queried, :meth:`ExperimentRecord.record_statuses`), not into 1,000 job records. Crash tests
    kill a status at ``NEMORUN_FAULT=status-logs-kept`` (logs kept, states not yet written),
    ``states-merged`` (``states.json`` lock held, not yet written) and ``status-recorded``
    (states written, the catalog row not yet).
    """
    out: dict[str, JobStatus] = {}
    by_backend: dict[str, list[tuple[JobRecord, Handle]]] = {}
    for rec in jobs:
        handle = rec.handle_obj()
        if handle is None or rec.app_state.is_terminal:
            out[rec.name] = JobStatus(rec.app_state, rec.exit_code, rec.error or rec.detail)
        else:
            by_backend.setdefault(handle.backend, []).append((rec, handle))
    known = {rec.name: rec for rec in jobs if rec.handle}  # read from its file (a stand-in for an unwritten one has none)
    for backend, pairs in by_backend.items():
        states = submitters.submitter(backend).status([h for _, h in pairs])
        unknown = JobStatus(AppState.UNKNOWN, None, "not reported by the backend")
        seen = [states.get(handle.id, unknown) for _, handle in pairs]
        submitters.sync_logs_many((handle, record.job_dir(rec.name)) for (rec, handle), status in zip(pairs, seen)
                                  if _ending(rec, status))  # one batch (links, or one write of the copies)
        fault("status-logs-kept")
        news = record.record_statuses(zip((rec for rec, _ in pairs), seen))  # one batch write
        for (rec, _), new in zip(pairs, news):
            out[rec.name] = JobStatus(new.app_state, new.exit_code, new.detail)
            known[rec.name] = new
    fault("status-recorded")
    # the records just read and written make the catalog row: not read a further time
    catalog.refresh(record.path.parent.parent.parent, record, known=known)
    return out


def _ending(rec: JobRecord, status: JobStatus) -> bool:
    """Whether this status ends a job not yet recorded as ended."""
    return not rec.app_state.is_terminal and as_recorded(rec, status).state.is_terminal


# Backends whose job states this machine holds itself (the job's wrapper writes its exit code
# into the job folder): reading them costs a few file reads, never a service round trip.
LOCAL_BACKENDS = frozenset({"local"})


def refresh_known(record: ExperimentRecord) -> bool:
    """Record the states already known on this machine for jobs not yet final (``exp list``
    must not show a finished local job as SUBMITTED); other backends keep their last state seen,
    which ``exp list`` marks with when it was checked. True when anything was read."""
    jobs = [j for j in record.jobs()
            if not j.app_state.is_terminal and j.handle and j.handle.get("backend") in LOCAL_BACKENDS]
    if jobs:
        refresh(record, jobs)
    return bool(jobs)


def wait(record: ExperimentRecord, names: Optional[Sequence[str]] = None, poll: float = POLL_SECONDS,
         watch: Optional[Callable[[dict[str, JobStatus]], None]] = None) -> dict[str, JobStatus]:
    """Block until every submitted job (of ``names``, default all) is terminal; ``watch`` sees
    each poll's states (:func:`nemorun.progress.watching` draws them)."""
    wanted = list(names) if names is not None else list(record.meta["jobs"])
    while True:
        jobs = [record.try_job(n) or JobRecord(name=n, target=record.meta["target"]) for n in wanted]
        states = refresh(record, jobs)
        if watch is not None:
            watch(states)
        if all(s.state.is_terminal or s.state is AppState.UNSUBMITTED for s in states.values()):
            return states
        time.sleep(poll)


def exit_code(status: JobStatus) -> int:
    """A job's exit code as a process would report it (0 only for a success)."""
    if status.exit_code is not None:
        return status.exit_code
    return 0 if status.state is AppState.SUCCEEDED else 1
