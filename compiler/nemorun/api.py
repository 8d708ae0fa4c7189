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

NeMo-Run's form (executors, tasks and experiments as Python objects, :mod:`nemorun.python_api`)
is translated to the same override list, so it records, reruns and renders like the CLI::

    ex = nemorun.SlurmExecutor(partition="batch", tunnel=nemorun.SSHTunnel(host="login", job_dir="/scratch/me"))
    nemorun.run(nemorun.Partial(train, lr=0.1), executor=ex)
    with nemorun.Experiment("pipeline", executor=ex) as exp:
        prep = exp.add(nemorun.Script(inline="echo prep"))
        exp.add(nemorun.Partial(train, lr=0.1), depends_on=[prep])
        exp.run()
"""
from __future__ import annotations

import copy
import importlib
import sys
import time
import warnings
from pathlib import Path
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Sequence, TextIO, Union

from nemorun import catalog, submitters, tracking
from nemorun.errors import ConfigError
from nemorun.names import check_name
from nemorun.states import AppState, Handle, JobStatus
from nemorun.store import JOB_FILE, ExperimentRecord, JobRecord, nemorun_home

if TYPE_CHECKING:
    from nemorun.python_api import AnyExecutor, Task


def _launching() -> ModuleType:
    """nemorun.launching (Hydra, OmegaConf, the composer and planner: ~0.25 s), loaded when a
    launch, rerun or resume needs it: ``nemorun exp list|show|status|logs|cancel`` never does."""
    return importlib.import_module("nemorun.launching")


def _python_api() -> ModuleType:
    """nemorun.python_api (OmegaConf and every schema), loaded when an experiment is built in Python."""
    return importlib.import_module("nemorun.python_api")


def _home(home: Optional[str | Path] = None) -> Path:
    return Path(home).expanduser() if home else nemorun_home()


@dataclass
class _Entry:
    """One ``Experiment.add``: a task, where it runs and what it waits for."""

    task: Task
    executor: Optional[AnyExecutor]
    name: str
    depends_on: list[str] = field(default_factory=list)
    dependency_type: str = "afterok"
    grid: Optional[Mapping[str, Sequence[Any]]] = None
    allocation: Optional[str] = None


class Experiment:
    """An experiment: ``Experiment(path)`` is a recorded one (a folder under
    ``NEMORUN_HOME/experiments``); ``Experiment("title", executor=...)`` is a new one, built with
    :meth:`add` / :meth:`add_sweep` and launched by :meth:`run` (then it is the recorded one)."""

    record: ExperimentRecord
    meta: dict[str, Any]

    def __init__(self, title: Union[str, Path], executor: Optional[AnyExecutor] = None):
        self._entries: list[_Entry] = []
        self._executor = copy.deepcopy(executor)
        self._shown = False  # dry-run: the jobs were looked at, not forgotten
        if isinstance(title, Path):
            self._attach(title)
            return
        try:
            check_name("experiment title", title)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.title = title

    def _attach(self, path: Path) -> None:
        self.record = ExperimentRecord(path)
        self.meta = self.record.meta
        self.title = str(self.meta.get("name", ""))

    def __getattr__(self, name: str) -> Any:
        # only reached for record/meta of an experiment that has not been launched yet
        if name in ("record", "meta"):
            raise ConfigError(f"experiment '{self.__dict__.get('title')}' has not run yet: call exp.run() first")
        raise AttributeError(name)

    def __enter__(self) -> "Experiment":
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Any) -> None:
        """Leaving the block launches nothing, as in NeMo-Run (only ``exp.run()`` submits): an
        exception inside it therefore submits nothing and propagates. Jobs added but neither run
        nor dry-run are most likely a forgotten ``exp.run()``, so that is warned about."""
        if exc_type is None and self._entries and "record" not in self.__dict__ and not self._shown:
            names = ", ".join(e.name for e in self._entries)
            warnings.warn(f"experiment '{self.title}' was not run: its jobs ({names}) were added but exp.run() was never "
                          "called, so nothing was submitted", UserWarning, stacklevel=2)

    # -- building (NeMo-Run's run.Experiment) -------------------------------------------------

    def _unique(self, wanted: Optional[str], task: Task) -> str:
        """Job names are task names in a multi-task experiment: letters, digits and '_'."""
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in (wanted or str(task.name))) or "task"
        if wanted is not None and base != wanted:
            raise ConfigError(f"job name {wanted!r}: use letters, digits and _ (it names the job and its folder)")
        taken = {e.name for e in self._entries}
        if wanted is not None and wanted in taken:
            raise ConfigError(f"experiment '{self.title}' already has a job named {wanted!r}")
        name, i = base, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        return name

    def add(self, task: Task, executor: Optional[AnyExecutor] = None, name: Optional[str] = None,
            depends_on: Sequence[str] = (), dependency_type: str = "afterok", allocation: Optional[str] = None) -> str:
        """Add a job; returns its id (its name), for ``depends_on`` of later jobs and for
        :meth:`logs` / :meth:`cancel` once the experiment runs. Jobs naming the same
        ``allocation`` share one Slurm job (a job group, or a heterogeneous job)."""
        if "record" in self.__dict__:
            raise ConfigError(f"experiment {self.id} has already run: use exp.rerun() or a new Experiment")
        if any(e.grid is not None for e in self._entries):
            raise ConfigError("an experiment with a sweep holds that sweep only: add other jobs to another experiment")
        _python_api().job_overrides(task, executor or self._executor)  # a bad task or executor fails here, not at run()
        known = [e.name for e in self._entries]
        for dep in depends_on:
            if dep not in known:
                raise ConfigError(f"depends_on: no job {dep!r} in this experiment yet (jobs: {', '.join(known) or 'none'})")
        kinds = importlib.import_module("nemorun.plan").DEPENDENCY_TYPES
        if dependency_type not in kinds:
            raise ConfigError(f"dependency_type={dependency_type!r}; use one of {', '.join(kinds)}")
        # copies, as NeMo-Run takes them: changing the objects after add() must not change this job
        entry = _Entry(copy.deepcopy(task), copy.deepcopy(executor), self._unique(name, task), list(depends_on),
                       dependency_type, allocation=allocation)
        self._entries.append(entry)
        return entry.name

    def add_sweep(self, task: Task, grid: Mapping[str, Sequence[Any]], executor: Optional[AnyExecutor] = None,
                  name: Optional[str] = None, allocation: Optional[str] = None) -> str:
        """A grid sweep of ``task`` (every combination of ``grid``'s values; a bare key is a
        function parameter, a dotted one any config key such as ``executor.nodes``): ONE
        experiment, one job array where the backend has arrays (Slurm). ``allocation``: the
        whole sweep as ONE Slurm job, each point a step of it (the CLI's ``allocation=NAME``)."""
        if self._entries:
            raise ConfigError("a sweep is an experiment of its own: add it to an empty Experiment")
        _python_api().sweep_overrides(task, grid)
        _python_api().job_overrides(task, executor or self._executor)
        self._entries.append(_Entry(copy.deepcopy(task), copy.deepcopy(executor), name or str(task.name), grid=dict(grid),
                                    allocation=allocation))
        return self._entries[0].name

    def overrides(self, sequential: bool = False) -> tuple[list[str], bool]:
        """The override list the CLI would be given for this experiment, and whether it is a sweep
        (``nemorun -m``): what :meth:`run` launches and the record stores."""
        if not self._entries:
            raise ConfigError(f"experiment '{self.title}' has no jobs: exp.add(task) first")
        first = self._entries[0]
        api = _python_api()
        checked_overrides, job_overrides, hydra_value = api.checked_overrides, api.job_overrides, api.hydra_value
        if first.grid is not None:
            ovs = [*job_overrides(first.task, first.executor or self._executor, first.name),
                   *api.sweep_overrides(first.task, first.grid),
                   *([] if first.allocation is None else [f"allocation={hydra_value(first.allocation)}"]),
                   f"name={self.title}"]
            return checked_overrides(ovs), True
        if len(self._entries) == 1 and not sequential and first.allocation is None:
            return checked_overrides([*job_overrides(first.task, first.executor or self._executor, first.name),
                                      f"name={self.title}"]), False
        # One executor for every job goes on the "command line" of the experiment, not into each
        # task: `exp rerun ID executor.x=y` then reaches every job (a task's own overrides come last).
        executors = [api.executor_overrides(e.executor or self._executor or api.LocalExecutor(), e.name) for e in self._entries]
        shared = executors[0] if all(x == executors[0] for x in executors) else []
        tasks = {}
        for i, (e, ex) in enumerate(zip(self._entries, executors)):
            deps = list(e.depends_on)
            if sequential and i and self._entries[i - 1].name not in deps:
                deps.append(self._entries[i - 1].name)
            tasks[e.name] = ([*([] if shared else ex), *api.task_overrides(e.task)], deps, e.dependency_type, e.allocation)
        return checked_overrides([*shared, api.experiment_override(self.title, tasks)]), False

    def dryrun(self, render_dir: Optional[str | Path] = None, out: Optional[TextIO] = None) -> None:
        """Render and check every artifact and print it (``render_dir``: also write them there); submit nothing."""
        overrides, sweep = self.overrides()
        self._shown = True
        # quoted: a folder named like 'a#b', "it's" or '${x}' is a path, not override syntax
        extra = [f"render_dir={_python_api().hydra_value(str(Path(render_dir).resolve()))}"] if render_dir is not None else []
        launch([*overrides, *extra], dryrun=True, multirun=sweep, out=out or sys.stdout)

    def run(self, detach: bool = True, sequential: bool = False, dryrun: bool = False,
            out: Optional[TextIO] = None) -> "Experiment":
        """Launch: record, then submit every job (``sequential``: each job after the previous one).
        ``detach=False`` stays attached until the jobs end, streaming their output."""
        if "record" in self.__dict__:
            raise ConfigError(f"experiment {self.id} has already run: use exp.rerun() for another run")
        overrides, sweep = self.overrides(sequential)
        out = out or sys.stdout
        if dryrun:
            launch(overrides, dryrun=True, multirun=sweep, out=out)
            self._shown = True
            return self
        path = _launching().record_path(_launching().launch([*overrides, *([] if detach else ["wait=true"])], multirun=sweep, out=out))
        if path is not None:
            self._attach(path)
        return self

    @classmethod
    def latest(cls, home: Optional[str | Path] = None) -> "Experiment":
        return cls.load("latest", home=home)

    # -- a recorded experiment -----------------------------------------------------------------

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
                sent = rec.handle_obj()  # the launch recorded it sent first: the compare-and-swap kept its handle
                if sent is not None and not rec.app_state.is_terminal:
                    submitters.submitter(sent.backend).cancel(sent)
                    rec.cancelled_at = time.time()
                    self.record.save_job(rec)
                done.append(rec.name)
        # an array not sent yet is a record of its own (not among the jobs): the launch about to send it skips it
        for name in (self.meta.get("arrays") or {}) if job is None else ():
            rec = self.record.try_job(name)
            if rec is not None and rec.handle_obj() is None and rec.phase == "rendered":
                rec.state, rec.detail = AppState.CANCELLED.value, "cancelled before submission"
                self.record.save_job(rec)
                sent = rec.handle_obj()  # the launch recorded the array sent first: the swap kept its handle
                if sent is not None and not rec.app_state.is_terminal:
                    self._cancel_sent_array(rec, sent)
        self.status(job)
        return done

    def _cancel_sent_array(self, rec: JobRecord, sent: Handle) -> None:
        """An array the launch sent between this cancel's read and its write: cancelled on the
        backend (the launch saw no mark, so it will not), and its tasks get ``cancelled_at`` in one
        batch (merged with the launch's task writes), so a task the backend then forgets
        (Slurm keeps no record of a cancelled PENDING task) reads CANCELLED, not UNKNOWN."""
        submitters.submitter(sent.backend).cancel(sent)
        now = time.time()
        rec.cancelled_at = now
        self.record.save_job(rec)
        tasks = [t for t in map(self.record.try_job, rec.array_of) if t is not None and t.cancelled_at is None]
        for t in tasks:
            t.cancelled_at = now
        self.record.save_jobs(tasks)

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
            _launching().resume(self.record, out=out)
            return Experiment(self.path)
        path = _launching().record_path(_launching().rerun(self.record, overrides, fresh_code=fresh_code, out=out))
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
    path = _launching().record_path(_launching().launch(args, multirun=multirun, out=out))
    return Experiment(path) if path is not None else None


def run(task: Task, executor: Optional[AnyExecutor] = None, name: Optional[str] = None, dryrun: bool = False,
        detach: bool = True, *, out: Optional[TextIO] = None) -> Optional[Experiment]:
    """NeMo-Run's ``run.run``: one task on one executor (default: this machine) as an experiment
    named ``name`` (default: the task's name). Returns the recorded experiment (None for a dry run)."""
    exp = Experiment(name or str(task.name), executor=executor)
    exp.add(task)
    if dryrun:
        exp.dryrun(out=out)
        return None
    return exp.run(detach=detach, out=out)


def experiments(name: Optional[str] = None, limit: Optional[int] = None, home: Optional[str | Path] = None) -> list[dict[str, Any]]:
    """Catalog rows, newest first: id, name, target, kind, created, path, jobs, states."""
    return catalog.rows(_home(home), name=name, limit=limit)
