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

import json
import os
import secrets
import tempfile
import time
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


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
        return AppState(self.state)

    def handle_obj(self) -> Optional[Handle]:
        return Handle.from_dict(self.handle) if self.handle else None

    @property
    def in_doubt(self) -> bool:
        return self.phase == "rendered" and self.attempted_at is not None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "JobRecord":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


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
        path = Path(home) / "experiments" / name / experiment_id
        path.mkdir(parents=True, exist_ok=False)
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
        from nemorun import catalog

        catalog.upsert(Path(home), rec)
        return rec

    # -- reading ----------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / EXPERIMENT_FILE).read_text())

    @property
    def id(self) -> str:
        return self.path.name

    def job_dir(self, job: str) -> Path:
        return self.path / "jobs" / job

    def job(self, job: str) -> JobRecord:
        return JobRecord.from_dict(json.loads((self.job_dir(job) / JOB_FILE).read_text()))

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
        if record.phase == "failed-to-submit":
            # every submission path raises right after this write: the catalog row must not be
            # left saying UNSUBMITTED (`exp list` reads the catalog, not the folders)
            from nemorun import catalog

            catalog.refresh(self.path.parent.parent.parent, self)

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
