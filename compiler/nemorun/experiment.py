"""Record and submit an experiment of many jobs (a sweep or a multi-task experiment), crash-safe.

Order of writes, so a ``kill -9`` at any instant leaves a record that says which jobs exist:

1. the experiment folder with every job name (``experiment.json``), then every job's artifacts
   and ``record.json`` in phase ``rendered`` — before the first submission;
2. per job: ``attempted_at`` written, the submit call, then phase ``submitted`` + handle (or
   ``failed-to-submit``). A job left ``rendered`` with ``attempted_at`` is *in doubt*: on
   ``--resume`` the submitter's optional ``find(job) -> Handle | None`` reconciles it (local: a
   scan of /proc and the job folder); backends without ``find`` resubmit it, with a warning.

Dependencies (``depends_on``): backends whose submitter sets ``NATIVE_DEPENDENCIES = True``
(Slurm: ``--dependency``) get the upstream handles in ``ir.Job.dependencies`` and are re-rendered
with them just before submission. Elsewhere nemorun itself waits for the upstream jobs to end
before submitting (limits: the launching process must stay alive — it blocks until the
upstream jobs finish; if it dies, ``nemorun exp rerun ID --resume`` submits what is left;
``afterok`` skips the downstream job when an upstream one did not succeed).

Fault points for the crash tests: ``NEMORUN_FAULT=<point>:<n>`` kills this process with SIGKILL
at ``rendered`` (all jobs recorded), ``before-submit:<n>`` or ``after-submit:<n>`` (job index n).
"""
from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, TextIO

from nemorun.errors import ConfigError, NemorunError, SubmitError, one_line
from nemorun.ir import Job
from nemorun.packaging import Packages
from nemorun.pipeline import PlannedJob, render_job
from nemorun.states import AppState, Handle
from nemorun.store import ExperimentRecord, JobRecord
from nemorun.submitters import submitter_module

POLL_SECONDS = 1.0
# backends whose renderer turns ir.Job.dependencies into the scheduler's own dependency option
NATIVE_DEPENDENCY_BACKENDS = frozenset({"slurm"})
# sweeps at least this long get a progress bar on a terminal
PROGRESS_MIN_JOBS = 20


@dataclass(frozen=True)
class Entry:
    """A planned job plus what the record keeps about how it was made."""

    planned: PlannedJob
    overrides: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    dependency_type: str = "afterok"

    @property
    def name(self) -> str:
        return self.planned.job.name


def _fault(point: str, index: Optional[int] = None) -> None:
    spec = os.environ.get("NEMORUN_FAULT")
    if spec and spec == (point if index is None else f"{point}:{index}"):
        os.kill(os.getpid(), signal.SIGKILL)


def check_dependencies(entries: Sequence[Entry]) -> list[Entry]:
    """Entries in an order where every job comes after the jobs it depends on.

    Unknown names and cycles are config errors, raised before anything is recorded.
    """
    by_name = {e.name: e for e in entries}
    for e in entries:
        for dep in e.depends_on:
            if dep not in by_name:
                raise ConfigError(f"job '{e.name}' depends on unknown job '{dep}' (jobs: {', '.join(by_name)})")
    order: list[Entry] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(e: Entry, path: list[str]) -> None:
        if state.get(e.name) == 2:
            return
        if state.get(e.name) == 1:
            cycle = path[path.index(e.name):] + [e.name]
            raise ConfigError(f"dependency cycle: {' -> '.join(cycle)}")
        state[e.name] = 1
        for dep in e.depends_on:
            visit(by_name[dep], path + [e.name])
        state[e.name] = 2
        order.append(e)

    for e in entries:
        visit(e, [])
    return order


def create_record(
    *, home: str, name: str, experiment_id: str, target: str, config_yaml: str, overrides: Sequence[str],
    submit_dir: str, entries: Sequence[Entry], kind: str, multirun: bool, array: Optional[PlannedJob] = None,
    packages: Optional[Packages] = None,
) -> ExperimentRecord:
    """With ``array``, the entries are its tasks: their folders hold only record.json; the array's
    folder holds the artifacts (what is submitted). ``packages``' archives are committed first,
    so a record with jobs always has its code (``--resume`` reuses it)."""
    tasks = [e.name for e in entries]
    record = ExperimentRecord.create(
        home=Path(home), name=name, experiment_id=experiment_id, target=target, config_yaml=config_yaml,
        overrides=overrides, submit_dir=submit_dir, job_names=tasks, kind=kind, multirun=multirun,
        arrays={array.job.name: tasks} if array else None,
    )
    if packages is not None:
        packages.commit(record.path)
    for index, e in enumerate(entries):
        rec = JobRecord(name=e.name, target=e.planned.rendered.target, overrides=list(e.overrides),
                        depends_on=list(e.depends_on), dependency_type=e.dependency_type)
        if array is None:
            rec.artifacts = record.write_artifacts(e.name, e.planned.rendered.artifacts)
        else:
            rec.array, rec.array_index = array.job.name, index
        record.save_job(rec)
    if array is not None:
        rec = JobRecord(name=array.job.name, target=array.rendered.target, array_of=tasks,
                        array_parallelism=array.job.array_parallelism)
        rec.artifacts = record.write_artifacts(array.job.name, array.rendered.artifacts)
        record.save_job(rec)
    _fault("rendered")
    return record


def _progress(total: int, out: TextIO) -> tuple[Callable[[], None], Callable[[], None]]:
    """(advance, close) for a rich progress bar on a terminal; no-ops elsewhere."""
    if total < PROGRESS_MIN_JOBS or not getattr(sys.stderr, "isatty", lambda: False)():
        return (lambda: None), (lambda: None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("submitting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True)
    task = progress.add_task("submit", total=total)
    progress.start()
    return (lambda: progress.advance(task)), progress.stop


def _wait_upstream(record: ExperimentRecord, entry: Entry) -> Optional[str]:
    """Block until every upstream job is terminal; return why the job must not run, if so."""
    pending = list(entry.depends_on)
    while pending:
        for dep in list(pending):
            rec = record.job(dep)
            handle = rec.handle_obj()
            if handle is None:
                return f"upstream job {dep} was not submitted ({rec.phase})"
            if not rec.app_state.is_terminal:
                status = submitter_module(handle.backend).status([handle])[handle.id]
                rec = record.record_status(dep, status)
            if rec.app_state.is_terminal:
                pending.remove(dep)
                if entry.dependency_type == "afterok" and rec.app_state is not AppState.SUCCEEDED:
                    return f"upstream job {dep} ended {rec.state} ({entry.dependency_type})"
                if entry.dependency_type == "afternotok" and rec.app_state is AppState.SUCCEEDED:
                    return f"upstream job {dep} succeeded ({entry.dependency_type})"
        if pending:
            time.sleep(POLL_SECONDS)
    return None


def _with_native_dependencies(record: ExperimentRecord, entry: Entry) -> PlannedJob:
    handles = []
    for dep in entry.depends_on:
        handle = record.job(dep).handle_obj()
        if handle is None:
            raise SubmitError(f"job {entry.name}: upstream job {dep} has no handle")
        handles.append(handle.id)
    job: Job = dataclasses.replace(entry.planned.job, dependencies=tuple(handles), dependency_type=entry.dependency_type)
    planned = PlannedJob(job, render_job(job))
    record.write_artifacts(entry.name, planned.rendered.artifacts)
    return planned


def find_local(job: Job) -> Optional[Handle]:
    """Did a local job of this job folder start? Its wrapper's argv names the folder."""
    from nemorun.submitters import local

    job_dir = str(job.job_dir)
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 5 and argv[0] == b"bash" and argv[3] == b"nemorun-job" and argv[4].decode() == job_dir:
            pid = int(pid_dir.name)
            return Handle("local", str(pid), {"pid": pid, "start_time": local._proc_start_time(pid), "job_dir": job_dir})
    if (Path(job_dir) / local.EXIT_CODE_FILE).exists():
        return Handle("local", "finished", {"pid": 0, "start_time": None, "job_dir": job_dir})
    return None


def _find(backend: str, job: Job) -> Optional[Handle]:
    module = submitter_module(backend)
    finder = getattr(module, "find", None) or (find_local if backend == "local" else None)
    if finder is None:
        raise LookupError(backend)
    return finder(job)


def submit_entries(record: ExperimentRecord, entries: Sequence[Entry], out: TextIO, *, quiet: bool = False) -> None:
    """Submit every entry whose record is not yet submitted, in dependency order."""
    advance, close = _progress(len(entries), out)
    submitted = 0
    try:
        for index, entry in enumerate(entries):
            rec = record.job(entry.name)
            if rec.phase == "submitted" or (rec.phase == "failed-to-submit" and rec.state == AppState.CANCELLED.value):
                advance()
                continue
            if rec.state == AppState.CANCELLED.value:
                advance()
                continue
            backend = entry.planned.rendered.target
            if rec.in_doubt:
                try:
                    found = _find(backend, entry.planned.job)
                except LookupError:
                    found = None
                    out.write(f"  warning: job {entry.name} may already exist on {backend} (launch died while submitting it); submitting again\n")
                if found is not None:
                    rec.phase, rec.handle, rec.state = "submitted", found.to_dict(), AppState.SUBMITTED.value
                    record.save_job(rec)
                    advance()
                    continue
            planned = entry.planned
            if entry.depends_on:
                if getattr(submitter_module(backend), "NATIVE_DEPENDENCIES", backend in NATIVE_DEPENDENCY_BACKENDS):
                    planned = _with_native_dependencies(record, entry)
                else:
                    reason = _wait_upstream(record, entry)
                    rec = record.job(entry.name)  # a cancel may have landed while waiting
                    if rec.state == AppState.CANCELLED.value:
                        continue
                    if reason:
                        rec.phase, rec.state, rec.error = "failed-to-submit", AppState.CANCELLED.value, f"not submitted: {reason}"
                        record.save_job(rec)
                        out.write(f"  job {entry.name}: not submitted: {reason}\n")
                        continue
            rec.attempted_at = time.time()
            record.save_job(rec)
            _fault("before-submit", index)
            try:
                handle = submitter_module(backend).submit(planned.rendered, planned.job)
            except NemorunError as exc:
                rec.phase, rec.error, rec.state = "failed-to-submit", one_line(str(exc)), AppState.FAILED.value
                record.save_job(rec)
                left = len(entries) - index - 1
                raise SubmitError(
                    f"job {entry.name} was not submitted: {one_line(str(exc))} ({submitted} submitted, {left} not yet; "
                    f"`nemorun exp rerun {record.id} --resume` submits the rest)"
                ) from exc
            _fault("after-submit", index)
            rec.phase, rec.handle, rec.state, rec.submitted_at = "submitted", handle.to_dict(), AppState.SUBMITTED.value, time.time()
            record.save_job(rec)
            submitted += 1
            advance()
            if not quiet:
                out.write(f"  job {entry.name}: submitted as {handle.id}\n")
    finally:
        close()
        from nemorun import catalog

        catalog.refresh(record.path.parent.parent.parent, record)


def submit_array(record: ExperimentRecord, array: PlannedJob, out: TextIO) -> None:
    """ONE submission for the whole array, then every task's record gets its own handle.

    The submitter's ``array_task_handle(handle, index) -> Handle`` names task ``index`` (Slurm:
    ``<id>_<index>`` and that task's log files), so status, logs and cancel work per task.
    """
    from nemorun import catalog

    name, backend = array.job.name, array.rendered.target
    module = submitter_module(backend)
    rec = record.job(name)
    try:
        if rec.phase != "submitted":
            if rec.in_doubt:
                out.write(f"  warning: array {name} may already exist on {backend} (launch died while submitting it); submitting again\n")
            rec.attempted_at = time.time()
            record.save_job(rec)
            _fault("before-submit", 0)
            try:
                handle = module.submit(array.rendered, array.job)
            except NemorunError as exc:
                rec.phase, rec.error, rec.state = "failed-to-submit", one_line(str(exc)), AppState.FAILED.value
                record.save_job(rec)
                raise SubmitError(f"array {name} was not submitted: {one_line(str(exc))}") from exc
            _fault("after-submit", 0)
            rec.phase, rec.handle, rec.state, rec.submitted_at = "submitted", handle.to_dict(), AppState.SUBMITTED.value, time.time()
            record.save_job(rec)
        handle = rec.handle_obj()
        assert handle is not None
        for index, task in enumerate(rec.array_of):
            task_rec = record.job(task)
            if task_rec.phase != "submitted":
                task_handle = module.array_task_handle(handle, index)
                task_rec.phase, task_rec.handle = "submitted", task_handle.to_dict()
                task_rec.state, task_rec.submitted_at = AppState.SUBMITTED.value, rec.submitted_at
                record.save_job(task_rec)
        out.write(f"  array {name}: submitted as {handle.id} ({len(rec.array_of)} tasks)\n")
    finally:
        catalog.refresh(record.path.parent.parent.parent, record)


def write_render_dir(entries: Iterable[PlannedJob], render_dir: str, single: bool) -> None:
    """One folder per job (``render_dir/<job>/<artifact>``); a lone job writes into render_dir."""
    root = Path(render_dir).expanduser()
    for p in entries:
        d = root if single else root / p.job.name
        d.mkdir(parents=True, exist_ok=True)
        for name, text in p.rendered.artifacts.items():
            path = d / name
            path.write_text(text)
            if name.endswith(".sh"):
                path.chmod(0o755)
