"""The experiment record on disk: ``NEMORUN_HOME/experiments/<name>/<id>/``.

Layout (a public contract: ``nemorun exp`` and other tools read it)::

    experiment.json          id, name, created, target, submit dir, job names, kind
                             (single | sweep | experiment), multirun, arrays
    jobs/<array>/            a job array (value-only sweep on Slurm): its artifacts (ONE script and
                             one task table, tasks.jsonl) and record.json (``array_of``: the jobs it
                             runs); each of those jobs' record.json names the array and its index and
                             holds its own task handle. These task records are small (fields at their
                             default left out) and written in batches (save_jobs: one sync per batch)
    config.yaml              the composed config, interpolations unresolved (no secret values)
    overrides.yaml           the command-line overrides
    jobs/<job>/<artifact>    every rendered artifact, byte for byte as submitted
    jobs/<job>/record.json      state of the job: rendered → submitted (handle) | failed-to-submit,
                             then the last state seen from the backend and the exit code;
                             ``attempted_at`` set while phase is still rendered = the launch died
                             during this job's submission (it may or may not exist on the backend)
    jobs/<job>/stdout.log, stderr.log   the job's output (local jobs write here directly)

``NEMORUN_HOME/catalog.db`` (SQLite, :mod:`nemorun.catalog`) indexes these folders for fast
listing; it is a cache, rebuilt from the folders whenever it disagrees with them.

Every file is written atomically (temp file + rename), and a job's record is written before
and after its submission, so a crash at any moment leaves a record saying which jobs exist. A
batch (:func:`atomic_write_many`) syncs its data before any rename and its renames before it
returns: each file is old or new, never partial, for two syncs instead of one fsync per file.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Callable, Iterable, Mapping, Optional

from nemorun.errors import ConfigError, DamagedRecordError, StoreError
from nemorun.names import check_name
from nemorun.states import AppState, Handle, JobStatus

EXPERIMENT_FILE = "experiment.json"
JOB_FILE = "record.json"
# when nemorun last asked the backends (``exp status``, a wait): one small file, so a poll that
# sees no change rewrites no job record and ``exp list`` still says how fresh its states are
CHECKED_FILE = "checked"


def nemorun_home() -> Path:
    return Path(os.environ.get("NEMORUN_HOME") or Path.home() / ".run").expanduser()


def new_experiment_id(now: Optional[float] = None) -> str:
    """Sortable by creation time (UTC, to the microsecond) and unique (random suffix)."""
    t = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(t))
    return f"{stamp}-{int((t % 1) * 1_000_000):06d}-{secrets.token_hex(2)}"


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write ``path`` whole or not at all; a failing disk is a :class:`StoreError` (one line)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _store_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, StoreError):
            raise _store_error(path, exc) from exc
        raise


def _sync_filesystem(path: Path) -> None:
    """Flush every pending write of the file system holding ``path`` (Linux ``syncfs``: one call
    for a batch of files instead of an ``fsync`` each); ``sync`` where there is no syncfs."""
    global _syncfs
    if _syncfs is None:
        try:
            import ctypes

            _syncfs = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            _syncfs = False
    if _syncfs:
        fd = os.open(path, os.O_RDONLY)
        try:
            if _syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    os.sync()


_syncfs: Any = None


def artifact_mode(path: PurePath) -> int:
    """Scripts are executable, every other artifact is not."""
    return 0o755 if path.name.endswith(".sh") else 0o644


def atomic_write_many(files: Iterable[tuple[Path, str | bytes]], sync_root: Path,
                      mode: Callable[[Path], int] = lambda path: 0o644) -> int:
    """Write a batch of files, each whole or not at all, durable together at the cost of two
    file-system syncs rather than one ``fsync`` per file: every temp file is written, synced,
    then renamed into place, then the renames are synced. A crash at any moment leaves each file
    either old or new, never partly written (the data is on disk before any rename). Returns
    how many files were written."""
    staged: list[tuple[str, Path]] = []
    renamed = 0
    try:
        for path, data in files:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            except OSError as exc:
                raise _store_error(path, exc) from exc
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
            os.chmod(tmp, mode(path))
        if not staged:
            return 0
        _sync_filesystem(sync_root)
        for tmp, path in staged:
            os.replace(tmp, path)
            renamed += 1
        _sync_filesystem(sync_root)
    except BaseException as exc:
        for tmp, _ in staged[renamed:]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, StoreError):
            raise _store_error(staged[renamed][1] if renamed < len(staged) else sync_root, exc) from exc
        raise
    return len(staged)


def _store_error(path: Path, exc: OSError) -> StoreError:
    return StoreError(f"cannot write {path}: {exc.strerror or exc}")


def _read_json(path: Path) -> Any:
    """A record file as JSON; absent stays FileNotFoundError, anything else unreadable is damage."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedRecordError(f"experiment record damaged: cannot read {path}: {exc}") from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise DamagedRecordError(f"experiment record damaged: {path} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise DamagedRecordError(f"experiment record damaged: {path} is not a JSON object")
    return value


def check_job_name(job: str) -> None:
    """Job names are folder names under ``jobs/``: the same rule as every other name."""
    try:
        check_name("job name", job)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _inside(root: Path, path: Path) -> Path:
    """``path`` if it stays under ``root`` once resolved (no ``..`` or symlink escapes)."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root or real == real_root:
        raise ConfigError(f"{path} is outside {root}; names must not contain '/' or be '..'")
    return path


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


@dataclass
class JobRecord:
    name: str
    target: str
    # rendered | submitted | failed-to-submit
    phase: str = "rendered"
    handle: Optional[dict[str, Any]] = None
    state: str = AppState.UNSUBMITTED.value
    exit_code: Optional[int] = None
    detail: str = ""
    error: Optional[str] = None
    artifacts: list[str] = field(default_factory=list)
    submitted_at: Optional[float] = None
    updated_at: Optional[float] = None
    # the Hydra overrides that make this job (sweeps: the job's own line)
    overrides: list[str] = field(default_factory=list)
    # set just before the submit call; with phase still 'rendered' the submission is in doubt
    attempted_at: Optional[float] = None
    # jobs (by name) this one waits for, and how (afterok, afterany, ...)
    depends_on: list[str] = field(default_factory=list)
    dependency_type: str = "afterok"
    # an array job's record: the sweep jobs it runs, in array-index order
    array_of: list[str] = field(default_factory=list)
    array_parallelism: Optional[int] = None
    # a sweep job run as a task of an array job: that job's name and this task's index
    array: Optional[str] = None
    array_index: Optional[int] = None
    # set when nemorun cancelled the job: if the backend then forgets it (Slurm keeps no record of
    # a cancelled PENDING array task), it ended CANCELLED rather than UNKNOWN
    cancelled_at: Optional[float] = None

    @property
    def app_state(self) -> AppState:
        try:
            return AppState(self.state)
        except ValueError:  # written by a newer nemorun or by hand: not a state this one knows
            return AppState.UNKNOWN

    def handle_obj(self) -> Optional[Handle]:
        return Handle.from_dict(self.handle) if self.handle else None

    @property
    def in_doubt(self) -> bool:
        return self.phase == "rendered" and self.attempted_at is not None

    def fields(self) -> dict[str, Any]:
        """The record as a dict for JSON: every field holds plain JSON values, so a shallow dict
        serialises like ``asdict`` without its deep copy (a tenth of a second per 1,000 records)."""
        return {name: getattr(self, name) for name in _JOB_FIELDS}

    def compact(self) -> dict[str, Any]:
        """The record without the fields that hold their default, except the ones every reader
        looks at first (name, target, phase, state)."""
        full = self.fields()
        return {k: v for k, v in full.items() if k in _ALWAYS_RECORDED or v != _JOB_DEFAULTS.get(k, _NO_DEFAULT)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "JobRecord":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if values.get("state") not in AppState._value2member_map_:
            values["state"] = AppState.UNKNOWN.value
        try:
            return cls(**values)
        except TypeError as exc:  # a required field is missing
            raise DamagedRecordError(f"experiment record damaged: job record without {exc}") from exc


def as_recorded(rec: JobRecord, status: JobStatus) -> JobStatus:
    """The state seen on the backend as ``rec`` takes it: a job nemorun cancelled that the backend
    no longer knows (UNKNOWN) was cancelled."""
    if rec.cancelled_at is not None and status.state is AppState.UNKNOWN:
        return JobStatus(AppState.CANCELLED, status.exit_code, f"cancelled by nemorun; {status.detail}".rstrip("; "))
    return status


def _apply_status(rec: JobRecord, status: JobStatus) -> bool:
    """Put a state seen on the backend into ``rec``; False when the record keeps what it has."""
    if rec.app_state.is_terminal and status.state is AppState.UNKNOWN:
        return False  # once a backend forgets a finished job, the last state seen stays the truth
    status = as_recorded(rec, status)
    exit_code = status.exit_code if status.exit_code is not None else rec.exit_code
    if (rec.state, rec.exit_code, rec.detail) == (status.state.value, exit_code, status.detail):
        return False  # seen as it was: a poll of 1,000 running tasks rewrites nothing
    rec.state = status.state.value
    rec.exit_code = exit_code
    rec.detail = status.detail
    return True


_NO_DEFAULT = object()
_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(JobRecord))
_ALWAYS_RECORDED = frozenset({"name", "target", "phase", "state"})
_JOB_DEFAULTS: dict[str, Any] = {
    f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)  # type: ignore[misc]
    for f in dataclasses.fields(JobRecord)
    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
}


class ExperimentRecord:
    """One experiment folder. Cheap to open; every method reads or writes one small file."""

    def __init__(self, path: Path):
        self.path = Path(path)

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        *,
        home: Path,
        name: str,
        experiment_id: str,
        target: str,
        config_yaml: str,
        overrides: Iterable[str],
        submit_dir: str,
        job_names: Iterable[str],
        kind: str = "single",
        multirun: bool = False,
        arrays: Optional[Mapping[str, list[str]]] = None,
    ) -> "ExperimentRecord":
        job_names = list(job_names)
        try:
            check_name("name", name)
            check_name("experiment id", experiment_id)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for job in job_names:
            check_job_name(job)
        root = Path(home) / "experiments"
        path = _inside(root, root / name / experiment_id)
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise
        except OSError as exc:
            raise _store_error(path, exc) from exc
        try:
            return cls._fill(path, home=Path(home), name=name, experiment_id=experiment_id, target=target,
                             config_yaml=config_yaml, overrides=list(overrides), submit_dir=submit_dir,
                             job_names=job_names, kind=kind, multirun=multirun, arrays=arrays)
        except BaseException:
            # a record that could not be written whole is no record: leave no empty folder behind
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only if no other experiment of that name is in it
            raise

    @classmethod
    def _fill(cls, path: Path, *, home: Path, name: str, experiment_id: str, target: str, config_yaml: str,
              overrides: list[str], submit_dir: str, job_names: list[str], kind: str, multirun: bool,
              arrays: Optional[Mapping[str, list[str]]]) -> "ExperimentRecord":
        rec = cls(path)
        atomic_write(path / "config.yaml", config_yaml)
        atomic_write(path / "overrides.yaml", "".join(f"- {json.dumps(o)}\n" for o in overrides) or "[]\n")
        write_json(
            path / EXPERIMENT_FILE,
            {
                "id": experiment_id,
                "name": name,
                "target": target,
                "created": time.time(),
                "submit_dir": submit_dir,
                "jobs": list(job_names),
                "overrides": list(overrides),
                "kind": kind,
                "multirun": multirun,
                # array job name -> the sweep jobs it runs (jobs/<array>/ holds its artifacts)
                "arrays": dict(arrays or {}),
            },
        )
        return rec

    # -- reading ----------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        meta = _read_json(self.path / EXPERIMENT_FILE)
        missing = [k for k in ("id", "name", "target", "created", "jobs") if k not in meta]
        if missing or not isinstance(meta["jobs"], list):
            raise DamagedRecordError(f"experiment record damaged: {self.path / EXPERIMENT_FILE} lacks {', '.join(missing) or 'a job list'}")
        return meta

    @property
    def id(self) -> str:
        return self.path.name

    def job_dir(self, job: str) -> Path:
        check_job_name(job)
        return self.path / "jobs" / job

    def job(self, job: str) -> JobRecord:
        return JobRecord.from_dict(_read_json(self.job_dir(job) / JOB_FILE))

    def jobs(self) -> list[JobRecord]:
        return [self.job(j) for j in self.meta["jobs"] if (self.job_dir(j) / JOB_FILE).exists()]

    def try_job(self, job: str) -> Optional[JobRecord]:
        try:
            return self.job(job)
        except FileNotFoundError:
            return None

    def state_counts(self) -> dict[str, int]:
        """Jobs per state; a job whose record was never written counts as UNSUBMITTED."""
        counts: dict[str, int] = {}
        for name in self.meta["jobs"]:
            rec = self.try_job(name)
            state = rec.state if rec else AppState.UNSUBMITTED.value
            counts[state] = counts.get(state, 0) + 1
        return counts

    # -- writing ----------------------------------------------------------------------------
    def save_job(self, record: JobRecord) -> None:
        record.updated_at = time.time()
        write_json(self.job_dir(record.name) / JOB_FILE, record.fields())

    def save_jobs(self, records: Iterable[JobRecord], compact: bool = True) -> None:
        """Many job records as one batch (a job array's tasks): each file is written whole, and
        the batch costs two file-system syncs instead of an fsync per job. ``compact``: small
        records, fields still at their default left out (:meth:`JobRecord.from_dict` restores them)."""
        now = time.time()

        def files() -> Iterable[tuple[Path, str]]:
            for record in records:
                record.updated_at = now
                text = json.dumps(record.compact(), sort_keys=True) if compact else json.dumps(record.fields(), indent=2, sort_keys=True)
                yield self.job_dir(record.name) / JOB_FILE, text + "\n"

        atomic_write_many(files(), self.path)

    def write_jobs(self, jobs: Iterable[tuple[JobRecord, Mapping[str, str]]]) -> None:
        """Jobs not yet sent, with their artifacts, as ONE batch (a sweep's jobs before the first
        submission): two file-system syncs for the lot. Each record lists its artifacts."""
        now = time.time()

        def files() -> Iterable[tuple[Path, str]]:
            for record, artifacts in jobs:
                d = self.job_dir(record.name)
                for name, text in artifacts.items():
                    yield d / name, text
                record.artifacts, record.updated_at = list(artifacts), now
                yield d / JOB_FILE, json.dumps(record.fields(), indent=2, sort_keys=True) + "\n"

        atomic_write_many(files(), self.path, mode=artifact_mode)

    def write_artifacts(self, job: str, artifacts: Mapping[str, str]) -> list[str]:
        d = self.job_dir(job)
        for name, text in artifacts.items():
            atomic_write(d / name, text, mode=artifact_mode(d / name))
        return list(artifacts)

    def record_status(self, job: str, status: JobStatus) -> JobRecord:
        rec = self.job(job)
        if _apply_status(rec, status):
            self.save_job(rec)
        return rec

    def record_statuses(self, updates: Iterable[tuple[str | JobRecord, JobStatus]]) -> list[JobRecord]:
        """:meth:`record_status` for many jobs (``exp status`` of a 1,000-task array) as ONE batch
        write, and the time of the check (:data:`CHECKED_FILE`). A record about to change is read
        again first, so a concurrent ``exp cancel`` is not overwritten; one given as already read
        that the status leaves as it is costs no read and no write."""
        out, changed = [], []
        for job, status in updates:
            if isinstance(job, JobRecord) and not _apply_status(dataclasses.replace(job), status):
                out.append(job)
                continue
            rec = self.job(job.name if isinstance(job, JobRecord) else job)
            out.append(rec)
            if _apply_status(rec, status):
                changed.append(rec)
        self.save_jobs(changed, compact=False)
        self.mark_checked()
        return out

    def mark_checked(self, now: Optional[float] = None) -> None:
        atomic_write(self.path / CHECKED_FILE, f"{time.time() if now is None else now}\n")

    @property
    def checked_at(self) -> Optional[float]:
        """When the backends were last asked (None: never, or a record older than this file)."""
        try:
            return float((self.path / CHECKED_FILE).read_text())
        except (OSError, ValueError):
            return None
