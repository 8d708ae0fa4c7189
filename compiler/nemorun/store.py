"""The experiment record on disk: ``NEMORUN_HOME/experiments/<name>/<id>/``.

Layout (a public contract: ``nemorun exp`` and other tools read it)::

    experiment.json          id, name, created, target, submit dir, job names, kind
                             (single | sweep | experiment), multirun, arrays
    jobs/<array>/            a job array (value-only sweep on Slurm): its artifacts and record.json
                             (``array_of``: the jobs it runs); each of those jobs' record.json names
                             the array and its index and holds its own task handle
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
and after its submission, so a crash at any moment leaves a record saying which jobs exist.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from nemorun.errors import ConfigError, DamagedRecordError, StoreError
from nemorun.schemas.core import check_name
from nemorun.states import AppState, Handle, JobStatus

EXPERIMENT_FILE = "experiment.json"
JOB_FILE = "record.json"


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
        write_json(self.job_dir(record.name) / JOB_FILE, asdict(record))

    def write_artifacts(self, job: str, artifacts: Mapping[str, str]) -> list[str]:
        d = self.job_dir(job)
        for name, text in artifacts.items():
            atomic_write(d / name, text, mode=0o755 if name.endswith(".sh") else 0o644)
        return list(artifacts)

    def record_status(self, job: str, status: JobStatus) -> JobRecord:
        rec = self.job(job)
        if rec.app_state.is_terminal and status.state is AppState.UNKNOWN:
            return rec  # once a backend forgets a finished job, the last state seen stays the truth
        if rec.cancelled_at is not None and status.state is AppState.UNKNOWN:
            status = JobStatus(AppState.CANCELLED, status.exit_code, f"cancelled by nemorun; {status.detail}".rstrip("; "))
        rec.state = status.state.value
        rec.exit_code = status.exit_code if status.exit_code is not None else rec.exit_code
        rec.detail = status.detail
        self.save_job(rec)
        return rec
