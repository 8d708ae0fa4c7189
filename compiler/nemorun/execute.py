"""One executor for every plan: dry run, or record → resolve → render → submit → record.

Every launch path ends here (CLI, Python API, multirun, ``exp rerun``, ``--resume``), so each
guarantee is enforced once:

1. dry run: every artifact is shown (and written to ``render_dir``), nothing is recorded or sent;
2. the record first: ``experiment.json``, ``config.yaml``, the code archives, then every job's
   artifacts and ``record.json`` in phase ``rendered`` — before the first submission;
3. per job: ids only the service knows are looked up (:func:`nemorun.submitters.resolve`) and
   the job is rendered and validated again only if that (or a native dependency's handle)
   changed it; the record gets exactly the bytes about to be sent; ``attempted_at`` is written;
   the submit call; then phase ``submitted`` + handle (or ``failed-to-submit``). A job left
   ``rendered`` with ``attempted_at`` is *in doubt*: on ``--resume`` the backend's ``find`` (a
   declared submitter feature) reconciles it; backends without one resubmit it, with a warning.

Dependencies (``depends_on``): targets whose capabilities declare native dependencies (Slurm:
``--dependency``) get the upstream handles rendered in. Elsewhere nemorun itself waits for the
upstream jobs to end before submitting (the launch stays attached until the chain is submitted;
if it dies, ``nemorun exp rerun ID --resume`` submits the rest; ``afterok`` skips the downstream
job when an upstream one did not succeed).

Fault points for the crash tests: ``NEMORUN_FAULT=<point>`` kills this process with SIGKILL at
``rendered`` (all jobs recorded), ``before-submit:<n>`` or ``after-submit:<n>`` (job index n), and
``tasks-recorded`` (an array's tasks recorded, the array itself not yet) and ``array-tasks`` (an
array recorded as submitted, its tasks' records not yet updated).

A job array's tasks are recorded in batches (:meth:`ExperimentRecord.save_jobs`, one sync per
batch): the array's own record is what says whether it exists on the backend, and ``--resume``
completes the tasks' records from it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, TextIO

from nemorun import capabilities, catalog, progress, submitters, tracking
from nemorun.command import ENTRY_FILE, ENTRY_SOURCE, TASK_TABLE
from nemorun.errors import ConfigError, DetachedError, NemorunError, StoreError, SubmitError, one_line
from nemorun.ir import Job
from nemorun.plan import ExperimentPlan, PlannedJob, render_job
from nemorun.states import AppState, Handle
from nemorun.store import JOB_FILE, ExperimentRecord, JobRecord, artifact_mode, atomic_write_many

# a dry run of a sweep prints at most this many job lines, then the first job's artifacts;
# a launch of more jobs than this prints a summary instead of a line per job
SUMMARY_LINES = 20
# a dry run of an array shows this many rows of its task table
TABLE_ROWS_SHOWN = 3
# sweeps at least this long get a progress bar on a terminal
PROGRESS_MIN_JOBS = 20


@dataclass
class Outcome:
    experiment_id: str
    name: str
    kind: str = "single"
    record: Optional[ExperimentRecord] = None
    # wait=true, one job: its exit code; several: each job's
    exit_code: Optional[int] = None
    exit_codes: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> list[tuple[str, int]]:
        return [(n, c) for n, c in self.exit_codes.items() if c != 0]


class _Output:
    """Where progress lines go. A reader that goes away (``nemorun -m ... | head -1``) must not
    stop a submission half way: once the pipe is closed, output is dropped and the work goes on
    (the record, not the terminal, is what keeps track of the jobs)."""

    def __init__(self, out: TextIO):
        self._out, self.closed = out, False

    def _guard(self, action: Callable[[], object]) -> None:
        if self.closed:
            return
        try:
            action()
        except (BrokenPipeError, ValueError):  # ValueError: the stream object itself was closed
            self.closed = True

    def write(self, text: str) -> None:
        self._guard(lambda: self._out.write(text))

    def flush(self) -> None:
        self._guard(self._out.flush)


def execute(plan: ExperimentPlan, out: TextIO = sys.stdout, *, resume: Optional[ExperimentRecord] = None) -> Outcome:
    """Carry out ``plan``; with ``resume``, complete that record's experiment instead of a new one."""
    out = _Output(out)  # type: ignore[assignment]
    if plan.render_dir and resume is None:
        write_render_dir(plan, plan.render_dir)
    if plan.dryrun and resume is None:
        show_dryrun(plan, out)
        return Outcome(plan.site.experiment_id, plan.name, plan.kind)
    record = resume if resume is not None else _create_record(plan, out)
    lock = _sending_lock(record, wait=resume is None)  # a resume refuses while another nemorun sends
    try:
        if resume is not None:
            record = _reconcile(plan, resume, out)
        if plan.array is not None:
            _submit_array(record, plan.array, out)
        else:
            _submit_jobs(record, plan.jobs, out, quiet=len(plan.jobs) > SUMMARY_LINES)
    finally:
        lock.release()
    if plan.kind == "sweep" and len(plan.jobs) > SUMMARY_LINES:
        out.write(f"  submitted {len(plan.jobs)} jobs; see: nemorun exp status {plan.site.experiment_id}\n")
    out.flush()
    outcome = Outcome(plan.site.experiment_id, plan.name, plan.kind, record)
    if plan.wait and resume is None:
        try:
            if plan.kind == "single":
                outcome.exit_code = wait_and_stream(record, plan.jobs[0].name)
                outcome.exit_codes = {plan.jobs[0].name: outcome.exit_code}
            else:
                names = plan.record_names()
                with progress.watching(record, names) as watch:  # a live table on a terminal only
                    states = tracking.wait(record, names, watch=watch)
                # per task: an allocation's own end is its steps' (not one more failed job)
                outcome.exit_codes = {n: tracking.exit_code(states[n]) for n in plan.task_names()}
        except KeyboardInterrupt:
            exp = plan.site.experiment_id
            follow = f"nemorun exp logs {exp} -f" if plan.kind == "single" else f"nemorun exp status {exp}"
            raise DetachedError(f"stopped waiting; the {'job keeps' if plan.kind == 'single' else 'jobs keep'} running: "
                                f"{follow} to reattach, nemorun exp cancel {exp} to stop") from None
    return outcome


def raise_if_failed(outcome: Outcome, shown: int = 10) -> None:
    """A waited sweep or multi-task experiment fails the command when any job failed, naming
    them (a single job's exit code is the command's own)."""
    failed = outcome.failed
    if not failed or outcome.kind == "single":
        return
    names = ", ".join(f"{n} (exit {c})" for n, c in failed[:shown])
    more = f" and {len(failed) - shown} more" if len(failed) > shown else ""
    raise NemorunError(f"{len(failed)} of {len(outcome.exit_codes)} jobs of experiment {outcome.experiment_id} failed: "
                       f"{names}{more} (nemorun exp status {outcome.experiment_id})")


# -- dry run -----------------------------------------------------------------------------------


def format_artifacts(planned: Sequence[PlannedJob]) -> str:
    """Every artifact in full, except the shipped entry point: nemorun's own ``entry.py``, the same
    bytes for every job (named here with its digest; ``render_dir`` gets the file itself)."""
    out: list[str] = []
    for p in planned:
        out.append(f"# job {p.name} ({p.target}); submit: {p.rendered.submit_command}\n")
        for name, text in p.rendered.artifacts.items():
            if name == ENTRY_FILE and text == ENTRY_SOURCE:
                digest = hashlib.sha256(text.encode()).hexdigest()[:12]
                out.append(f"==> {name} <== (nemorun's node-side entry point, {len(text)} bytes, sha256 {digest}...)\n")
                continue
            out.append(f"==> {name} <==\n")
            out.append(text if text.endswith("\n") else text + "\n")
        for title, text in p.rendered.views.items():  # for reading only: not an artifact, not sent
            out.append(f"==> {title} (display only, not submitted) <==\n{text.rstrip()}\n")
    return "".join(out)


def _varying(batch: Sequence[Sequence[str]]) -> list[int]:
    """Positions of the overrides that differ between jobs (what a summary line shows); one pass
    over the batch (an array's is made job by job when read)."""
    jobs = iter(batch)
    first = next(jobs, None)
    if first is None:
        return []
    same = set(range(len(first)))
    for job in jobs:
        if len(job) != len(first):
            return list(range(len(first)))
        same -= {i for i in same if job[i] != first[i]}
    return [i for i in range(len(first)) if i not in same]


def show_dryrun(plan: ExperimentPlan, out: TextIO) -> None:
    packed = plan.kind == "sweep" and plan.array is None and any(p.job.steps for p in plan.jobs)  # allocation=NAME: one job, its steps
    if plan.kind == "experiment" or packed:
        for p in plan.jobs:
            after = f" after {', '.join(p.depends_on)} ({p.dependency_type})" if p.depends_on else ""
            what = f"allocation {p.name}: tasks {', '.join(s.name for s in p.job.steps)} as steps of one job" if p.job.steps else f"task {p.name}"
            out.write(f"# {what}{after}\n")
    if plan.kind != "sweep" or packed:
        out.write(format_artifacts(plan.jobs))
        return
    count, render_dir = len(plan.jobs), plan.render_dir
    varying = _varying(plan.job_overrides())
    summary = "".join(f"#   {p.name}: {' '.join(p.overrides[i] for i in varying) or '(no varying override)'}\n"
                      for p in plan.jobs[:SUMMARY_LINES])
    if count > SUMMARY_LINES:
        summary += f"#   ... and {count - SUMMARY_LINES} more\n"
    if plan.array is not None and plan.array.rendered is not None:
        array, artifacts = plan.array, dict(plan.array.rendered.artifacts)
        table = artifacts.get(TASK_TABLE, "")
        rows = table.count("\n")
        if rows > TABLE_ROWS_SHOWN:  # the table grows with the sweep: its first rows show its shape
            artifacts[TASK_TABLE] = _first_lines(table, TABLE_ROWS_SHOWN)
        shown = dataclasses.replace(array, rendered=dataclasses.replace(array.rendered, artifacts=artifacts))
        out.write(f"# dry run: sweep of {count} jobs as ONE job array ({array.name}): one script, one row per task in "
                  f"{TASK_TABLE}; experiment {plan.name} ({plan.target}); every job checked, nothing submitted\n")
        out.write(summary)
        out.write(format_artifacts([shown]))
        if rows > TABLE_ROWS_SHOWN:
            where = f"written to {render_dir}/{array.name}/" if render_dir else "add render_dir=DIR to write them"
            out.write(f"# ... and {rows - TABLE_ROWS_SHOWN} more rows of {TASK_TABLE} ({where})\n")
        return
    out.write(f"# dry run: sweep of {count} jobs, experiment {plan.name} ({plan.target}); every job rendered and "
              "validated, nothing submitted\n")
    out.write(summary)
    where = f"all {count} jobs written to {render_dir}/<job>/" if render_dir else f"all {count}: add render_dir=DIR"
    out.write(f"# artifacts of the first job ({where}):\n")
    out.write(format_artifacts(plan.jobs[:1]))


def _first_lines(text: str, count: int) -> str:
    """The first ``count`` lines of ``text``, without splitting all of it (a 10,000-row table)."""
    end = -1
    for _ in range(count):
        end = text.find("\n", end + 1)
        if end < 0:
            return text
    return text[:end + 1]


def write_render_dir(plan: ExperimentPlan, render_dir: str) -> None:
    """A lone job writes into ``render_dir``; several write ``render_dir/<job>/``; an array job
    writes its own folder only (its tasks are not submitted one by one)."""
    root = Path(render_dir).expanduser()
    jobs = [plan.array] if plan.array is not None else list(plan.jobs)
    single = plan.array is None and len(jobs) == 1
    files = (((root if single else root / p.name) / name, text) for p in jobs for name, text in _artifacts(p).items())
    if root.exists() and not root.is_dir():
        raise ConfigError(f"render_dir={render_dir!r} is a file, not a folder")
    home = os.path.realpath(plan.site.home)
    if os.path.commonpath([home, os.path.realpath(root)]) == home:  # through a symlink too
        raise ConfigError(f"render_dir={render_dir!r} is inside NEMORUN_HOME ({home}), whose records keep what was "
                          "submitted; write the artifacts somewhere else")
    try:  # the user's folder, not NEMORUN_HOME: a path that cannot be written is theirs to fix
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_many(files, root, mode=artifact_mode)
    except OSError as exc:
        raise ConfigError(f"render_dir={render_dir!r} cannot be written: {exc.strerror or exc}") from None


# -- the record ------------------------------------------------------------------------------

# held by the one process sending an experiment's jobs (its launch, or a --resume): released by
# the OS when that process dies, so a crashed launch never blocks its own resume
SENDING_LOCK = "sending.lock"


def _sending_lock(record: ExperimentRecord, *, wait: bool) -> Any:
    """Why: two ``exp rerun ID --resume`` at once (or one while the launch still waits on an
    upstream job) each found the same jobs unsent and sent them: 80 jobs, 42 of them run twice or
    three times. A resume does not wait for another sender (that may take hours): it refuses."""
    from filelock import FileLock, Timeout

    path = record.path / SENDING_LOCK
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        raise SubmitError(f"experiment {record.id} is being sent by another nemorun (its launch, or a --resume) right now; "
                          "resume it once that has ended: nothing was sent twice") from None
    except OSError as exc:  # a read-only or full NEMORUN_HOME: nothing can be recorded, so nothing is sent
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
    return lock


def _fault(point: str, index: Optional[int] = None) -> None:
    spec = os.environ.get("NEMORUN_FAULT")
    if spec and spec == (point if index is None else f"{point}:{index}"):
        os.kill(os.getpid(), signal.SIGKILL)


def _job_record(p: PlannedJob) -> JobRecord:
    return JobRecord(name=p.name, target=p.target, overrides=list(p.overrides), depends_on=list(p.depends_on),
                     dependency_type=p.dependency_type)


def _step_record(p: PlannedJob, index: int) -> JobRecord:
    """The record of step ``index`` of allocation ``p``: the task it runs, with that task's own
    overrides (what ``exp status`` shows and compares), on a fresh launch and a resume alike."""
    return JobRecord(name=p.job.steps[index].name, target=p.target,
                     overrides=list(p.step_overrides[index]) if p.step_overrides else [])


def _artifacts(p: PlannedJob) -> Mapping[str, str]:
    assert p.rendered is not None, f"job {p.name} is a task of an array: the array's artifacts are sent"
    return p.rendered.artifacts


def _create_record(plan: ExperimentPlan, out: TextIO) -> ExperimentRecord:
    """With an array, the jobs are its tasks: their folders hold only record.json; the array's
    folder holds the artifacts (what is submitted). The code is committed first, so a record
    with jobs always has its code (``--resume`` reuses it)."""
    site, array = plan.site, plan.array
    names = plan.record_names()  # an allocation's tasks too (HET)
    record = ExperimentRecord.create(
        home=Path(site.home), name=plan.name, experiment_id=site.experiment_id, target=plan.target,
        config_yaml=plan.config_yaml, overrides=plan.overrides, submit_dir=site.submit_dir, job_names=names,
        kind=plan.kind, multirun=plan.multirun, arrays={array.name: names} if array else None,
        config_dirs=plan.config_dirs,
    )
    try:
        catalog.upsert(Path(site.home), record)
        plan.packages.commit(record.path)
        if array is None:  # one batch: nothing is sent before every job is recorded
            record.write_jobs((_job_record(p), _artifacts(p)) for p in plan.jobs)
            record.save_jobs(_step_record(p, i) for p in plan.jobs for i in range(len(p.job.steps)))
        else:
            _record_array(record, plan, array)
    except Exception:
        # nothing was sent: an experiment whose jobs could not all be recorded (a full disk) is
        # no record, as ExperimentRecord.create has it; left, it listed N jobs that never were
        shutil.rmtree(record.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            record.path.parent.rmdir()  # only if no other experiment of that name is in it
        raise
    _fault("rendered")
    count = len(plan.task_names())  # an allocation is not one more task
    what = {"single": f"({plan.target})", "experiment": f"({plan.target}): {count} tasks",
            "sweep": f"({plan.target}): {count} jobs"}[plan.kind]
    out.write(f"experiment {plan.name}/{site.experiment_id} {what} in {record.path}\n")
    out.flush()
    return record


def _record_array(record: ExperimentRecord, plan: ExperimentPlan, array: PlannedJob) -> None:
    """The tasks' records (small, ONE batch: one sync, not one per task), then the array's own
    record and artifacts: the array's record is what says it may exist on the backend, so it comes
    last. Tasks already recorded (a resumed launch) keep their record. Each task's record is made
    from its name and overrides as it is written (no job per task is made)."""
    names, overrides = plan.record_names(), plan.job_overrides()
    record.save_jobs(JobRecord(name=name, target=array.target, overrides=list(overrides[index]), array=array.name,
                               array_index=index)
                     for index, name in enumerate(names) if not (record.job_dir(name) / JOB_FILE).exists())
    _fault("tasks-recorded")
    rec = JobRecord(name=array.name, target=array.target, array_of=names, array_parallelism=array.job.array_parallelism)
    rec.artifacts = record.write_artifacts(array.name, _artifacts(array))
    record.save_job(rec)


def _reconcile(plan: ExperimentPlan, record: ExperimentRecord, out: TextIO) -> ExperimentRecord:
    """``--resume``: the plan must be the recorded one; jobs whose record was never written get it."""
    meta = record.meta
    if plan.record_names() != list(meta["jobs"]):
        raise ConfigError(f"experiment {record.id} no longer plans the same jobs (config files changed?); use rerun without --resume")
    plan.packages.commit(record.path)  # only an archive the record lacked (the launch died before writing it)
    changed = "would differ from the recorded one (config changed since launch?); use rerun without --resume"
    if plan.array is not None:
        name = plan.array.name
        if list(meta.get("arrays") or {}) != [name]:
            raise ConfigError(f"array {name} {changed}")
        rec = record.try_job(name)
        if rec is None:  # the launch died before recording the array, so before sending it
            _record_array(record, plan, plan.array)
            rec = record.job(name)
        stored = {a: f.read_text() for a in rec.artifacts if (f := record.job_dir(name) / a).exists()}  # gone: differs
        if any(stored.get(a) != t for a, t in _artifacts(plan.array).items()):
            raise ConfigError(f"array {name} {changed}")
        pending = sum(1 for t in meta["jobs"] if (record.try_job(t) or JobRecord(t, "")).phase != "submitted")
    else:
        for p in plan.jobs:
            rec = record.try_job(p.name)
            if rec is None:
                rec = _job_record(p)
                rec.artifacts = record.write_artifacts(p.name, p.rendered.artifacts)
                record.save_job(rec)
            elif rec.phase != "submitted" and rec.attempted_at is None and not p.depends_on:
                for name, text in p.rendered.artifacts.items():
                    stored_file = record.job_dir(p.name) / name
                    if not stored_file.exists() or stored_file.read_text() != text:
                        raise ConfigError(f"job {p.name}: {name} {changed}")
        # a kill between the jobs' batch and their steps' batch left an allocation's tasks unrecorded
        record.save_jobs(_step_record(p, i) for p in plan.jobs for i, s in enumerate(p.job.steps)
                         if record.try_job(s.name) is None)
        pending = sum(1 for p in plan.jobs if record.job(p.name).phase != "submitted")
    out.write(f"experiment {meta['name']}/{record.id}: resuming, {pending} of {len(plan.jobs)} jobs not yet submitted\n")
    return record


# -- submission ------------------------------------------------------------------------------


def _wait_upstream(record: ExperimentRecord, p: PlannedJob) -> Optional[str]:
    """Block until every upstream job is terminal; return why the job must not run, if so."""
    pending = list(p.depends_on)
    while pending:
        for dep in list(pending):
            rec = record.job(dep)
            if rec.handle_obj() is None:
                return f"upstream job {dep} was not submitted ({rec.phase})"
            if not rec.app_state.is_terminal:
                tracking.refresh(record, [rec])
                rec = record.job(dep)
            if rec.app_state.is_terminal:
                pending.remove(dep)
                if p.dependency_type == "afterok" and rec.app_state is not AppState.SUCCEEDED:
                    return f"upstream job {dep} ended {rec.state} ({p.dependency_type})"
                if p.dependency_type == "afternotok" and rec.app_state is AppState.SUCCEEDED:
                    return f"upstream job {dep} succeeded ({p.dependency_type})"
        if pending:
            time.sleep(tracking.POLL_SECONDS)
    return None


def _not_submitted(exc: NemorunError) -> type[NemorunError]:
    """The error kind that reports ``exc`` stopping a submission: a config error found only at
    submission (e.g. an option the cluster's Slurm lacks) stays a config error (exit 2)."""
    return ConfigError if isinstance(exc, ConfigError) else SubmitError


def _native_dependencies(record: ExperimentRecord, p: PlannedJob) -> tuple[str, ...]:
    handles = []
    for dep in p.depends_on:
        handle = record.job(dep).handle_obj()
        if handle is None:
            raise SubmitError(f"job {p.name}: upstream job {dep} has no handle")
        handles.append(handle.id)
    return tuple(handles)


def _settled(rec: JobRecord) -> bool:
    """Nothing is left to send for this job: it was submitted, or cancelled before its turn."""
    return rec.phase == "submitted" or rec.state == AppState.CANCELLED.value


def _resolve_before_sending(record: ExperimentRecord, jobs: Sequence[PlannedJob]) -> dict[str, Job]:
    """Every job still to send, resolved (:func:`nemorun.submitters.resolve`: ids only the service
    knows, the Slurm cluster's option probe) BEFORE the first one is sent. Why: a refusal of the
    third task of an experiment found only at its turn left the first two running; now it refuses
    the launch with nothing sent. Lookups are cached by the submitters (one probe per cluster)."""
    resolved: dict[str, Job] = {}
    for p in jobs:
        rec = record.job(p.name)
        if _settled(rec) or rec.in_doubt:  # in doubt: adopted or sent at its turn (_adopt)
            continue
        try:
            resolved[p.name] = submitters.resolve(p.job)
        except NemorunError as exc:
            _failed(record, rec, exc)
            raise _not_submitted(exc)(f"job {p.name} was not submitted: {one_line(str(exc))} (no job of this launch was sent; "
                                      f"record: {record.path})") from exc
    return resolved


def _send(record: ExperimentRecord, rec: JobRecord, p: PlannedJob, index: int, resolved: Optional[Job] = None) -> Handle:
    """Resolve → render (only if resolving changed the job) → record exactly those bytes →
    mark attempted → submit. Raises the submitter's NemorunError after recording it. ``resolved``:
    the job as :func:`_resolve_before_sending` resolved it (resolving again is then a cache hit)."""
    job = p.job if resolved is None else resolved
    if p.depends_on and capabilities.of(p.target).native_dependencies:
        job = dataclasses.replace(job, dependencies=_native_dependencies(record, p), dependency_type=p.dependency_type)
    try:
        if job is not resolved:  # not resolved yet, or a dependency's handle was added since
            job = submitters.resolve(job)
    except NemorunError as exc:
        _failed(record, rec, exc)
        raise
    rendered = p.rendered if job == p.job else render_job(job)
    if record.job(p.name).state == AppState.CANCELLED.value:  # `exp cancel` came while it was resolved
        raise _CancelledBeforeSending(p.name)
    if rendered is not p.rendered:
        rec.artifacts = record.write_artifacts(p.name, rendered.artifacts)
    rec.attempted_at = time.time()
    record.save_job(rec)
    _fault("before-submit", index)
    try:
        handle = submitters.submitter(p.target).submit(rendered, job)
    except NemorunError as exc:
        _failed(record, rec, exc)
        raise
    _fault("after-submit", index)
    cancelled = record.job(p.name).state == AppState.CANCELLED.value  # `exp cancel` landed while it was being sent
    rec.phase, rec.handle, rec.state, rec.submitted_at = "submitted", handle.to_dict(), AppState.SUBMITTED.value, time.time()
    raced = record.save_job(rec)  # compare-and-swap: a cancel mark written since is returned, never overwritten
    if cancelled or (raced is not None and raced.state == AppState.CANCELLED.value):
        _cancel_sent(record, rec, handle)
    return handle


class _CancelledBeforeSending(Exception):
    """``exp cancel`` marked the job while the launch resolved it (a cluster probe over SSH takes
    seconds): it is not sent, and the record keeps the cancel."""


def _cancel_sent(record: ExperimentRecord, rec: JobRecord, handle: Handle) -> None:
    """The user's cancel wins over a submission that was under way when it came: ``exp cancel``
    found no handle to cancel (only "cancelled before submission" to write), so what was just sent
    is cancelled here; left alone, it ran and the launch's record hid the cancel."""
    try:
        submitters.submitter(handle.backend).cancel(handle)
    except NemorunError as exc:  # it was sent: say so, and that the cancel did not reach it
        rec.detail = f"exp cancel came while it was being submitted; cancelling it failed: {one_line(str(exc))}"
    else:
        rec.state, rec.detail, rec.cancelled_at = AppState.CANCELLED.value, "cancelled while it was being submitted", time.time()
    record.save_job(rec)


def _failed(record: ExperimentRecord, rec: JobRecord, exc: BaseException, refresh: bool = True) -> None:
    record.save_job(_failed_record(rec, exc))
    if refresh:
        catalog.refresh(record.path.parent.parent.parent, record)  # `exp list` must not say UNSUBMITTED


def _adopt(record: ExperimentRecord, rec: JobRecord, p: PlannedJob, out: TextIO) -> bool:
    """A job whose submission a crash left in doubt: True (recorded as submitted) when the
    backend finds it, so it is never sent twice; False when it surely does not exist, or when
    the backend cannot look (then it is sent again, with a warning). A backend that can look
    but cannot be reached stops the resume: guessing could start a second copy."""
    what = "array" if p.job.array_tasks else "job"
    try:
        found = submitters.find(p.job)
    except LookupError:
        out.write(f"  warning: {what} {p.name} may already exist on {p.target} (launch died while submitting it); "
                  "submitting again\n")
        return False
    except NemorunError as exc:
        raise SubmitError(f"{what} {p.name}: cannot tell whether the launch that died submitted it, so it is not "
                          f"submitted again: {one_line(str(exc))} (retry: nemorun exp rerun {record.id} --resume)") from exc
    if found is None:
        return False
    rec.phase, rec.handle, rec.state = "submitted", found.to_dict(), AppState.SUBMITTED.value
    rec.submitted_at = rec.attempted_at
    record.save_job(rec)
    out.write(f"  {what} {p.name}: found on {p.target} as {found.id} (submitted before the launch died)\n")
    return True


def _submit_jobs(record: ExperimentRecord, jobs: Sequence[PlannedJob], out: TextIO, *, quiet: bool) -> None:
    """Submit every job whose record is not yet submitted, in dependency order."""
    resolved = _resolve_before_sending(record, jobs) if len(jobs) > 1 else {}
    advance, close = progress.bar("submitting", len(jobs), min_total=PROGRESS_MIN_JOBS)
    submitted = 0
    try:
        for index, p in enumerate(jobs):
            rec = record.job(p.name)
            if _settled(rec):
                _steps_submitted(record, p)
                advance()
                continue
            if rec.in_doubt and _adopt(record, rec, p, out):
                _steps_submitted(record, p)
                advance()
                continue
            if p.depends_on and not capabilities.of(p.target).native_dependencies:
                reason = _wait_upstream(record, p)
                rec = record.job(p.name)  # a cancel may have landed while waiting
                if rec.state == AppState.CANCELLED.value:
                    continue
                if reason:
                    rec.phase, rec.state, rec.error = "failed-to-submit", AppState.CANCELLED.value, f"not submitted: {reason}"
                    record.save_job(rec)
                    out.write(f"  job {p.name}: not submitted: {reason}\n")
                    continue
            try:
                handle = _send(record, rec, p, index, resolved.get(p.name))
                _steps_submitted(record, p)
            except _CancelledBeforeSending:
                out.write(f"  job {p.name}: cancelled before submission\n")
                advance()
                continue
            except NemorunError as exc:
                left = len(jobs) - index - 1
                rest = (f"; {submitted} submitted, {left} not yet: `nemorun exp rerun {record.id} --resume` submits the rest"
                        if len(jobs) > 1 else "")
                raise _not_submitted(exc)(f"job {p.name} was not submitted: {one_line(str(exc))} (record: {record.path}{rest})") from exc
            submitted += 1
            advance()
            if not quiet:
                logs = f"; logs: {record.job_dir(p.name)}" if len(jobs) == 1 else ""
                out.write(f"  job {p.name}: submitted as {handle.id}{logs}\n")
    finally:
        close()
        catalog.refresh(record.path.parent.parent.parent, record)


def _steps_submitted(record: ExperimentRecord, p: PlannedJob) -> None:
    """Each task an allocation runs gets its step's handle once the job is on the backend, so
    status, logs and cancel take task names (nemorun.allocations); a resume completes them."""
    handle = record.job(p.name).handle_obj() if p.job.steps else None
    for i, step in enumerate(p.job.steps if handle is not None else ()):
        rec = record.try_job(step.name) or _step_record(p, i)
        if rec.phase != "submitted":
            rec.phase, rec.handle = "submitted", submitters.step_handle(handle, step.name).to_dict()
            rec.state, rec.submitted_at = AppState.SUBMITTED.value, record.job(p.name).submitted_at
            record.save_job(rec)


def _submit_array(record: ExperimentRecord, array: PlannedJob, out: TextIO) -> None:
    """ONE submission for the whole array, then every task's record gets its own handle
    (:func:`nemorun.submitters.array_task_handle`), so status, logs and cancel work per task."""
    rec = record.job(array.name)
    try:
        if _settled(rec) and rec.phase != "submitted":  # `exp cancel` before its turn: send nothing
            out.write(f"  array {array.name}: cancelled before submission\n")
            return
        if rec.phase != "submitted":
            if not (rec.in_doubt and _adopt(record, rec, array, out)):
                try:
                    _send(record, rec, array, 0)
                except _CancelledBeforeSending:
                    out.write(f"  array {array.name}: cancelled before submission\n")
                    return
                except NemorunError as exc:
                    # `exp status` lists the tasks: each says why it did not run (one batch)
                    record.save_jobs(_failed_record(record.job(task), exc) for task in rec.array_of)
                    raise _not_submitted(exc)(f"array {array.name} was not submitted: {one_line(str(exc))} (record: {record.path})") from exc
            rec = record.job(array.name)
        handle = rec.handle_obj()
        assert handle is not None
        _fault("array-tasks")  # the array is recorded submitted, its tasks not yet: --resume fills them in
        pending = [(index, record.job(task)) for index, task in enumerate(rec.array_of)]
        # tasks `exp cancel ID TASK` marked while the array was being sent are cancelled on the backend
        cancelled = [(i, t) for i, t in pending if t.phase != "submitted" and t.state == AppState.CANCELLED.value]
        # a mark made while this batch was written is merged into it (compare-and-swap), never lost
        raced = {t.name for t in record.save_jobs(_task_submitted(task_rec, handle, index, rec.submitted_at)
                                                  for index, task_rec in pending if task_rec.phase != "submitted")
                 if t.state == AppState.CANCELLED.value and t.handle is None}
        raced -= {t.name for _, t in cancelled}
        cancelled += [(i, t) for i, t in pending if t.name in raced]
        for index, task_rec in cancelled if rec.state != AppState.CANCELLED.value else ():
            _cancel_sent(record, record.job(task_rec.name), submitters.array_task_handle(handle, index))
        if rec.state == AppState.CANCELLED.value:  # the whole array: its tasks say so too
            record.save_jobs(dataclasses.replace(record.job(t), state=AppState.CANCELLED.value, cancelled_at=rec.cancelled_at,
                                                 detail=rec.detail) for t in rec.array_of)
        out.write(f"  array {array.name}: submitted as {handle.id} ({len(rec.array_of)} tasks)\n")
    finally:
        catalog.refresh(record.path.parent.parent.parent, record)


def _task_submitted(task_rec: JobRecord, handle: Handle, index: int, at: Optional[float]) -> JobRecord:
    task_rec.phase, task_rec.handle = "submitted", submitters.array_task_handle(handle, index).to_dict()
    task_rec.state, task_rec.submitted_at = AppState.SUBMITTED.value, at
    return task_rec


def _failed_record(rec: JobRecord, exc: BaseException) -> JobRecord:
    rec.phase, rec.error, rec.state = "failed-to-submit", one_line(str(exc)), AppState.FAILED.value
    return rec


def record_and_submit(record: ExperimentRecord, p: PlannedJob) -> JobRecord:
    """One job into an existing record, then submitted (what a launch does per job)."""
    rec = _job_record(p)
    rec.artifacts = record.write_artifacts(p.name, p.rendered.artifacts)
    record.save_job(rec)
    _send(record, rec, p, 0)
    return record.job(p.name)


def wait_and_stream(record: ExperimentRecord, job_name: str) -> int:
    """Stream a job's stdout/stderr to ours until it ends; return its exit code."""
    handle = record.job(job_name).handle_obj()
    assert handle is not None
    submitters.echo(submitters.follow(handle))
    states = tracking.refresh(record, [record.job(job_name)])
    return tracking.exit_code(states[job_name])
