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

from nemorun.states import AppState, Handle, JobStatus
from nemorun.store import JOB_FILE, ExperimentRecord, JobRecord, nemorun_home


LOG_FILES = ("stdout.log", "stderr.log")
# a finished remote job's output, copied into its folder when its submitter has no fetch_logs
SYNCED_LOG = "output.log"


def sync_logs(module: Any, handle: Handle, job_dir: Path) -> None:
    """Keep a finished remote job's logs in the record (clusters purge theirs).

    Submitter hook: ``fetch_logs(handle, dest_dir)`` writes ``stdout.log``/``stderr.log`` into
    ``dest_dir`` (the job's record folder). Without it the output of ``logs(handle)`` is saved
    as ``output.log``. Never fatal: a failed copy leaves ``exp logs`` asking the backend.
    """
    from nemorun.errors import NemorunError
    from nemorun.store import atomic_write

    if any((job_dir / f).exists() for f in (*LOG_FILES, SYNCED_LOG)):
        return
    try:
        if hasattr(module, "fetch_logs"):
            module.fetch_logs(handle, job_dir)
        else:
            atomic_write(job_dir / SYNCED_LOG, "".join(module.logs(handle, follow=False)))
    except (NemorunError, OSError):
        pass


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
        from nemorun import catalog

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
        from nemorun.errors import ConfigError

        jobs = self.jobs
        if job is None:
            return jobs
        chosen = [j for j in jobs if j.name == job]
        if not chosen:
            raise ConfigError(f"experiment {self.id} has no job '{job}' (jobs: {', '.join(j.name for j in jobs[:10])})")
        return chosen

    def status(self, job: Optional[str] = None) -> dict[str, JobStatus]:
        """Live states: ONE ``status`` call per backend for all of its handles.

        A job that turns terminal gets its logs synced into its folder when the submitter has
        ``fetch_logs(handle, dest_dir)`` (remote backends), so logs outlive the cluster's copy.
        """
        from nemorun import catalog
        from nemorun.submitters import submitter_module

        out: dict[str, JobStatus] = {}
        by_backend: dict[str, list[tuple[JobRecord, Handle]]] = {}
        for rec in self._select(job):
            handle = rec.handle_obj()
            if handle is None or rec.app_state.is_terminal:
                out[rec.name] = JobStatus(rec.app_state, rec.exit_code, rec.error or rec.detail)
            else:
                by_backend.setdefault(handle.backend, []).append((rec, handle))
        for backend, pairs in by_backend.items():
            module = submitter_module(backend)
            states = module.status([h for _, h in pairs])
            for rec, handle in pairs:
                status = states.get(handle.id, JobStatus(AppState.UNKNOWN, None, "not reported by the backend"))
                new = self.record.record_status(rec.name, status)
                if new.app_state.is_terminal and backend != "local":
                    sync_logs(module, handle, self.record.job_dir(rec.name))
                out[rec.name] = JobStatus(new.app_state, new.exit_code, new.detail)
        catalog.refresh(self.home, self.record)
        return out

    def wait(self, poll: float = 1.0) -> dict[str, JobStatus]:
        """Block until every submitted job is terminal."""
        while True:
            states = self.status()
            if all(s.state.is_terminal or s.state is AppState.UNSUBMITTED for s in states.values()):
                return states
            time.sleep(poll)

    def _submitted(self, job: Optional[str]) -> tuple[JobRecord, Handle]:
        """The one job named (or the only one) and its handle; ConfigError if it has none."""
        from nemorun.errors import ConfigError

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
        from nemorun.submitters import follow

        _, handle = self._submitted(job)
        yield from follow(handle)

    def logs(self, job: Optional[str] = None, follow: bool = False) -> Iterator[str]:
        """A job's output: the synced copy in its folder if there is one, else from the backend."""
        from nemorun.submitters import submitter_module

        rec, handle = self._submitted(job)
        local_copy = [self.record.job_dir(rec.name) / f for f in (*LOG_FILES, SYNCED_LOG)]
        if handle.backend != "local" and not follow and any(p.exists() for p in local_copy):
            for p in local_copy:
                if p.exists():
                    yield from p.open(errors="replace")
            return
        yield from submitter_module(handle.backend).logs(handle, follow=follow)

    def cancel(self, job: Optional[str] = None) -> list[str]:
        """Cancel submitted jobs (idempotent) and mark not-yet-submitted ones so a waiting launch skips them."""
        from nemorun.submitters import submitter_module

        done: list[str] = []
        for rec in self._select(job):
            handle = rec.handle_obj()
            if handle is not None and not rec.app_state.is_terminal:
                submitter_module(handle.backend).cancel(handle)
                rec.cancelled_at = time.time()
                self.record.save_job(rec)
                done.append(rec.name)
            elif handle is None and rec.phase == "rendered" and (self.record.job_dir(rec.name) / JOB_FILE).exists():
                rec.state, rec.detail = AppState.CANCELLED.value, "cancelled before submission"
                self.record.save_job(rec)
                done.append(rec.name)
        self.status(job)
        return done

    def rerun(self, overrides: Sequence[str] = (), *, resume: bool = False, out: TextIO = sys.stdout) -> Optional["Experiment"]:
        """A new experiment from this one's STORED config (config.yaml, not the config files,
        which may have changed since), its overrides, then ``overrides`` (later ones win).
        Values only: a config-group selection (``executor=slurm``) needs a new launch.

        ``resume=True`` instead completes THIS experiment: the jobs are planned again with its
        id and submit directory, checked to render exactly as recorded, and only the jobs not
        yet on the backend are submitted.
        """
        if resume:
            from nemorun.launching import resume as resume_experiment

            resume_experiment(self.record, out=out)
            return Experiment(self.path)
        from nemorun.launching import rerun

        path = rerun(self.record, overrides, out=out)
        return Experiment(path) if path is not None else None


def launch(
    overrides: Sequence[str],
    dryrun: bool = False,
    *,
    multirun: Optional[bool] = None,
    out: TextIO = sys.stdout,
) -> Optional[Experiment]:
    """Compose, check, render, record and submit, like ``nemorun [-m] overrides...``."""
    from nemorun.launching import launch_overrides

    args = list(overrides) + (["dryrun=true"] if dryrun else [])
    path = launch_overrides(args, multirun=multirun, out=out)
    return Experiment(path) if path is not None else None


def experiments(name: Optional[str] = None, limit: Optional[int] = None, home: Optional[str | Path] = None) -> list[dict[str, Any]]:
    """Catalog rows, newest first: id, name, target, kind, created, path, jobs, states."""
    from nemorun import catalog

    return catalog.rows(_home(home), name=name, limit=limit)
