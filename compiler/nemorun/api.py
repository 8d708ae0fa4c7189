"""The Python API; ``nemorun exp ...`` is a thin layer over it.

    import nemorun
    exp = nemorun.launch(["task=train", "task.params.lr=1e-4,3e-4"])   # a sweep: ONE experiment
    exp.status()                      # {job: JobStatus}, one backend query per backend
    for line in exp.logs("train-0"): print(line, end="")
    exp.cancel()
    again = exp.rerun(["task.params.steps=5"])
    nemorun.Experiment.load("latest").jobs
    nemorun.experiments(name="train")

``launch`` composes with the same config tree, user config folders and plugins as the CLI.
Overrides with sweep syntax (``a=1,2``, ``range(...)``) make a sweep unless ``multirun=False``.
A dry run records nothing: it prints what the CLI prints and returns ``None``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, TextIO

from nemorun import catalog, launching, submitters, tracking
from nemorun.errors import ConfigError
from nemorun.states import AppState, Handle, JobStatus
from nemorun.store import JOB_FILE, ExperimentRecord, JobRecord, nemorun_home


def _home(home: Optional[str | Path] = None) -> Path:
    return Path(home).expanduser() if home else nemorun_home()


class Experiment:
    """One recorded experiment (a folder under ``NEMORUN_HOME/experiments``)."""

    def __init__(self, path: Path):
        self.record = ExperimentRecord(path)
        self.meta: dict[str, Any] = self.record.meta

    @classmethod
    def load(cls, ref: str = "latest", home: Optional[str | Path] = None) -> "Experiment":
        """``ref``: a full id, a unique id prefix, or ``latest``."""
        return cls(catalog.resolve(_home(home), ref))

    @property
    def id(self) -> str:
        return str(self.meta["id"])

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def path(self) -> Path:
        return self.record.path

    @property
    def home(self) -> Path:
        return self.record.path.parent.parent.parent

    @property
    def jobs(self) -> list[JobRecord]:
        return [self.record.try_job(n) or JobRecord(name=n, target=self.meta["target"]) for n in self.meta["jobs"]]

    def _select(self, job: Optional[str]) -> list[JobRecord]:
        jobs = self.jobs
        if job is None:
            return jobs
        chosen = [j for j in jobs if j.name == job]
        if not chosen:
            raise ConfigError(f"experiment {self.id} has no job '{job}' (jobs: {', '.join(j.name for j in jobs[:10])})")
        return chosen

    def status(self, job: Optional[str] = None) -> dict[str, JobStatus]:
        """Live states: ONE ``status`` call per backend for all of its handles, recorded (and a
        finished remote job's logs copied into its folder)."""
        return tracking.refresh(self.record, self._select(job))

    def wait(self, poll: float = tracking.POLL_SECONDS) -> dict[str, JobStatus]:
        """Block until every submitted job is terminal."""
        return tracking.wait(self.record, poll=poll)

    def _submitted(self, job: Optional[str]) -> tuple[JobRecord, Handle]:
        """The one job named (or the only one) and its handle; ConfigError if it has none."""
        jobs = self._select(job)
        if len(jobs) > 1:
            raise ConfigError(f"experiment {self.id} has {len(jobs)} jobs: name one ({', '.join(j.name for j in jobs[:5])}, ...)")
        rec = jobs[0]
        handle = rec.handle_obj()
        if handle is None:
            raise ConfigError(f"job {rec.name} was not submitted ({rec.phase}{': ' + rec.error if rec.error else ''})")
        return rec, handle

    def follow(self, job: Optional[str] = None) -> Iterator[tuple[str, str]]:
        """``(stream, line)`` pairs until the job ends, ``stream`` being stdout or stderr: what
        ``wait=true`` shows, so ``exp logs -f`` can keep the two apart. Backends without a
        ``stream`` hook report every line as stdout."""
        _, handle = self._submitted(job)
        yield from submitters.follow(handle)

    def logs(self, job: Optional[str] = None, follow: bool = False) -> Iterator[str]:
        """A job's output: the synced copy in its folder if there is one, else from the backend."""
        rec, handle = self._submitted(job)
        local_copy = [self.record.job_dir(rec.name) / f for f in (*submitters.LOG_FILES, submitters.SYNCED_LOG)]
        if not follow and any(p.exists() for p in local_copy):
            for p in local_copy:
                if p.exists():
                    yield from p.open(errors="replace")
            return
        yield from submitters.submitter(handle.backend).logs(handle, follow=follow)

    def cancel(self, job: Optional[str] = None) -> list[str]:
        """Cancel submitted jobs (idempotent) and mark not-yet-submitted ones so a waiting launch skips them."""
        done: list[str] = []
        for rec in self._select(job):
            handle = rec.handle_obj()
            if handle is not None and not rec.app_state.is_terminal:
                submitters.submitter(handle.backend).cancel(handle)
                rec.cancelled_at = time.time()
                self.record.save_job(rec)
                done.append(rec.name)
            elif handle is None and rec.phase == "rendered" and (self.record.job_dir(rec.name) / JOB_FILE).exists():
                rec.state, rec.detail = AppState.CANCELLED.value, "cancelled before submission"
                self.record.save_job(rec)
                done.append(rec.name)
        self.status(job)
        return done

    def rerun(self, overrides: Sequence[str] = (), *, resume: bool = False, fresh_code: bool = False,
              out: TextIO = sys.stdout) -> Optional["Experiment"]:
        """A new experiment from this one's STORED config (config.yaml, not the config files,
        which may have changed since), its overrides, then ``overrides`` (later ones win).
        Values only: a config-group selection (``executor=slurm``) needs a new launch.

        ``resume=True`` instead completes THIS experiment: the jobs are planned again with its
        id and submit directory, checked to render exactly as recorded, and only the jobs not
        yet on the backend are submitted.

        A rerun ships the code this experiment ran (its recorded archive, checked by digest);
        ``fresh_code=True`` packs the current working tree instead.
        """
        if resume:
            launching.resume(self.record, out=out)
            return Experiment(self.path)
        path = launching.record_path(launching.rerun(self.record, overrides, fresh_code=fresh_code, out=out))
        return Experiment(path) if path is not None else None


def launch(
    overrides: Sequence[str],
    dryrun: bool = False,
    *,
    multirun: Optional[bool] = None,
    out: TextIO = sys.stdout,
) -> Optional[Experiment]:
    """Compose, check, render, record and submit, like ``nemorun [-m] overrides...``."""
    args = list(overrides) + (["dryrun=true"] if dryrun else [])
    path = launching.record_path(launching.launch(args, multirun=multirun, out=out))
    return Experiment(path) if path is not None else None


def experiments(name: Optional[str] = None, limit: Optional[int] = None, home: Optional[str | Path] = None) -> list[dict[str, Any]]:
    """Catalog rows, newest first: id, name, target, kind, created, path, jobs, states."""
    return catalog.rows(_home(home), name=name, limit=limit)
