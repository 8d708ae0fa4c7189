"""One planner for every launch: a single job, a multi-task experiment and a sweep alike.

:func:`plan` takes the job override lists (one list for a single run or a multi-task experiment,
one per job for a sweep) and a :class:`~nemorun.compose.Composer`, and returns ONE
:class:`ExperimentPlan`: every job composed, packaged, lowered to the IR (which checks it
against its target's capabilities), rendered and validated — before anything is recorded or
sent. :func:`nemorun.execute.execute` then does the rest; no front end plans or submits by
itself, so a guarantee enforced here or there holds on every path (CLI, Python API, multirun,
``exp rerun``, ``--resume``).

Sweeps at milliseconds per job. A compose costs ~50 ms, so jobs of a sweep that differ only in
VALUES are composed once per distinct set of group selections (``executor=local,slurm`` = two
composes) and the rest are patched:

- every varying key under ``task.params`` and no interpolation in the config: the first job's
  IR is copied with new params (the function signature is re-checked per job);
- other value changes: the override is applied to the composed config in place (Hydra's own
  merge, so types are still enforced) and the job is lowered again; config-wide checks
  (unknown keys, ``???``) are skipped because a primitive value cannot change them.

Shell artifacts are syntax-checked in one batch at the end of planning, on every path
(:func:`nemorun.validate.batched_shell_checks`), never by evaluating them.

Job arrays. When a sweep's jobs differ only in their task's values (:func:`array_job`) and the
target declares ``arrays`` in its capabilities, the plan carries ONE array job (``array``;
task i = sweep job i, at most ``max_parallel`` at once) and that is what is submitted.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from nemorun import capabilities, ir, lower
from nemorun.compose import (
    ValueTable, Composer, apply_overrides, as_typed, compose_files, describe_error, hydra_context, is_value_override,
)
from nemorun.errors import ConfigError
from nemorun.ir import Job, Rendered
from nemorun.lower import Site
from nemorun.packaging import Packages
from nemorun.render import is_env_name
from nemorun.store import nemorun_home, new_experiment_id
from nemorun.targets import target_module
from nemorun.validate import batched_shell_checks

PlanKind = Literal["single", "sweep", "experiment"]
DEPENDENCY_TYPES = ("afterok", "afterany", "afternotok")


@dataclass(frozen=True)
class PlannedJob:
    """A job ready to send, plus what the record keeps about how it was made."""

    job: Job
    rendered: Rendered
    overrides: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    dependency_type: str = "afterok"

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def target(self) -> str:
        return self.rendered.target


@dataclass(frozen=True)
class ExperimentPlan:
    """Everything :func:`nemorun.execute.execute` needs; nothing in it has touched a backend."""

    site: Site
    name: str
    kind: PlanKind
    # every job, in an order where each comes after the jobs it depends on
    jobs: tuple[PlannedJob, ...]
    # the composed config (interpolations unresolved, no secret values) and the overrides given
    config_yaml: str
    overrides: tuple[str, ...]
    multirun: bool
    # the code packed for this experiment, committed into the record by execute
    packages: Packages
    # a value-only sweep on a target with arrays: ONE job running ``jobs`` as its array tasks
    array: Optional[PlannedJob] = None
    dryrun: bool = False
    render_dir: Optional[str] = None
    wait: bool = False

    @property
    def target(self) -> str:
        return self.jobs[0].target


def default_site(experiment_id: Optional[str] = None) -> Site:
    return Site(experiment_id=experiment_id or new_experiment_id(), submit_dir=os.getcwd(), home=str(nemorun_home()),
                python=sys.executable)


def render_job(job: Job) -> Rendered:
    module = target_module(job.target)
    rendered: Rendered = module.render(job)
    module.validate(rendered)
    return rendered


def config_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [str(k) for k in cfg.keys() if k != "hydra"]))


def plan(
    batch: Sequence[Sequence[str]],
    composer: Composer,
    site: Site,
    *,
    command_overrides: Optional[Sequence[str]] = None,
    multirun: bool = False,
    packages: Optional[Packages] = None,
    max_parallel: Optional[int] = None,
    first: Optional[DictConfig] = None,
) -> ExperimentPlan:
    """Plan the jobs of ``batch`` as ONE experiment (see the module docstring).

    ``command_overrides`` are the overrides as typed (recorded; a sweep's un-expanded form),
    default ``batch[0]``. ``first``: ``batch[0]`` already composed (a compose cache hit, or
    ``@hydra.main``'s config). ``packages``: the experiment's packaging (``--resume`` passes one
    over the record, so the recorded archives are reused).
    """
    if not batch:
        raise ConfigError("nothing to launch: the sweep has no jobs")
    packages = packages or Packages(site)
    # as typed: the ``++`` that free-form maps get for composing is not what the user wrote
    batch = [as_typed(job) for job in batch]
    command = tuple(as_typed(command_overrides if command_overrides is not None else batch[0]))
    with batched_shell_checks() as label:
        if multirun:
            return _plan_sweep(batch, composer, site, command, packages, max_parallel, label)
        cfg = first if first is not None else composer.compose(list(batch[0]))
        common = dict(site=site, config_yaml=config_yaml(cfg), overrides=command, multirun=False, packages=packages,
                      dryrun=bool(cfg.get("dryrun")), render_dir=cfg.get("render_dir"), wait=bool(cfg.get("wait")))
        if cfg.get("experiment") is not None:
            title, jobs = _plan_tasks(cfg, command, site, packages, label)
            return ExperimentPlan(name=title, kind="experiment", jobs=jobs, **common)  # type: ignore[arg-type]
        lower.check_config(cfg)
        name = lower.experiment_name(cfg)
        label(f"job {name}", name)
        job = lower.compile_job(cfg, site, package=packages.package(cfg))
        planned = PlannedJob(job, render_job(job), command)
        return ExperimentPlan(name=job.experiment_name, kind="single", jobs=(planned,), **common)  # type: ignore[arg-type]


def plan_config(cfg: DictConfig, site: Site, overrides: Sequence[str] = ()) -> ExperimentPlan:
    """The plan of one config composed elsewhere (tests, ``@hydra.main``): multi-task experiments
    compose their tasks from the files."""
    return plan([list(overrides)], _NoCompose(), site, first=cfg)


class _NoCompose:
    def compose(self, overrides: Sequence[str]) -> DictConfig:
        raise AssertionError("plan_config composes nothing")

    def is_group(self, key: str) -> bool:
        return False


# -- dependencies ----------------------------------------------------------------------------


def check_dependencies(jobs: Sequence[PlannedJob]) -> tuple[PlannedJob, ...]:
    """Jobs in an order where every job comes after the jobs it depends on.

    Unknown names and cycles are config errors, raised before anything is recorded.
    """
    by_name = {p.name: p for p in jobs}
    for p in jobs:
        for dep in p.depends_on:
            if dep not in by_name:
                raise ConfigError(f"job '{p.name}' depends on unknown job '{dep}' (jobs: {', '.join(by_name)})")
    order: list[PlannedJob] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(p: PlannedJob, path: list[str]) -> None:
        if state.get(p.name) == 2:
            return
        if state.get(p.name) == 1:
            cycle = path[path.index(p.name):] + [p.name]
            raise ConfigError(f"dependency cycle: {' -> '.join(cycle)}")
        state[p.name] = 1
        for dep in p.depends_on:
            visit(by_name[dep], path + [p.name])
        state[p.name] = 2
        order.append(p)

    for p in jobs:
        visit(p, [])
    return tuple(order)


# -- multi-task experiments (experiment=<option>) --------------------------------------------
#
# Each task is composed like a command line of its own: the command line's overrides (minus the
# ``experiment`` ones) followed by the task's ``overrides``, so ``executor=slurm`` on the command
# line moves every task while a task can still pick its own executor. Job names are the task
# names. Tasks are composed from the config files (also on ``exp rerun``: a documented limit).


def _own(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return key == "experiment" or key.startswith("experiment.")


def experiment_title(cfg: DictConfig) -> str:
    return str(cfg.get("name") or cfg.experiment.get("name") or "experiment")


def _plan_tasks(
    cfg: DictConfig, overrides: Sequence[str], site: Site, packages: Packages, label: Callable[..., None]
) -> tuple[str, tuple[PlannedJob, ...]]:
    tasks = cfg.experiment.tasks
    if not tasks:
        raise ConfigError("experiment has no tasks: list them under experiment.tasks")
    title = experiment_title(cfg)
    base = [o for o in overrides if not _own(o)]
    jobs: list[PlannedJob] = []
    with hydra_context():
        for name, spec in tasks.items():
            if not is_env_name(str(name)):
                raise ConfigError(f"experiment task name {name!r}: use letters, digits and _")
            if spec.dependency_type not in DEPENDENCY_TYPES:
                raise ConfigError(f"experiment.tasks.{name}.dependency_type={spec.dependency_type!r}: one of {', '.join(DEPENDENCY_TYPES)}")
            task_overrides = [*base, *[str(o) for o in spec.overrides], f"name={title}"]
            try:
                task_cfg = compose_files(task_overrides)
            except Exception as exc:
                raise ConfigError(f"experiment task {name}: {describe_error(exc)[1]}") from exc
            lower.check_config(task_cfg)
            label(f"task {name}", str(name))
            job = lower.compile_job(task_cfg, site, job_name=str(name), package=packages.package(task_cfg))
            jobs.append(PlannedJob(job, render_job(job), tuple(task_overrides),
                                   tuple(str(d) for d in spec.depends_on), str(spec.dependency_type)))
    return title, check_dependencies(jobs)


# -- sweeps ----------------------------------------------------------------------------------


def _primitive(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float, str, bool)) and value != "???")


def _has_interpolation(cfg: Any) -> bool:
    if isinstance(cfg, DictConfig):
        keys: Any = [k for k in cfg.keys() if k != "hydra"]
    else:
        keys = range(len(cfg)) if OmegaConf.is_list(cfg) else []
    for key in keys:
        if OmegaConf.is_interpolation(cfg, key):
            return True
        if OmegaConf.is_missing(cfg, key):
            continue
        child = cfg[key] if OmegaConf.is_list(cfg) else cfg.get(key)
        if OmegaConf.is_config(child) and _has_interpolation(child):
            return True
    return False


def _set_path(params: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = params
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def job_names(task_name: str, count: int) -> list[str]:
    width = len(str(count - 1))
    return [f"{task_name}-{i:0{width}d}" for i in range(count)] if count > 1 else [task_name]


_MISSING = object()


class _Group:
    """Jobs sharing one set of group selections: composed once, patched per job."""

    def __init__(self, cfg: DictConfig, first: Job, first_values: Mapping[str, Any]):
        self.cfg = cfg
        self.first = first
        self.values = dict(first_values)
        self.ir_patchable = not _has_interpolation(cfg)


def _packager_key(ov: Any) -> bool:
    return str(ov.key_or_group).split(".", 1)[0] == "packager"


def _first_line(exc: BaseException) -> str:
    cause = exc.__cause__
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if cause is not None and str(cause):
        text += f": {str(cause).splitlines()[0]}"
    return text


def _patched(group: _Group, values: Mapping[str, Any], site: Site, name: str) -> Job:
    changed = {k: p for k, p in values.items() if group.values.get(k, _MISSING) != p.value() or k not in group.values}
    job_dir = os.path.join(site.experiment_dir(group.first.experiment_name), "jobs", name)
    if group.ir_patchable and changed and all(k.startswith("task.params.") for k in changed) and all(
        _primitive(p.value()) for p in changed.values()
    ):
        params = copy.deepcopy(dict(group.first.task.params))
        for key, ov in changed.items():
            _set_path(params, key.split(".")[2:], ov.value())
        task = dataclasses.replace(group.first.task, params=params)
        if task.kind == "function":
            lower.check_function_call(str(task.target), params, group.first.package.source_dir or group.first.workdir)
        return dataclasses.replace(group.first, name=name, job_dir=job_dir, task=task)
    try:
        apply_overrides(list(values.values()), group.cfg)
    except Exception as exc:
        raise ConfigError(f"job {name}: {_first_line(exc)}") from exc
    if not all(_primitive(p.value()) for p in values.values()):
        lower.check_config(group.cfg)
    return lower.compile_job(group.cfg, site, job_name=name, package=group.first.package)


def _plan_sweep(
    batch: Sequence[Sequence[str]], composer: Composer, site: Site, command: tuple[str, ...], packages: Packages,
    max_parallel: Optional[int], label: Callable[..., None],
) -> ExperimentPlan:
    table = ValueTable(command)
    groups: dict[tuple[str, ...], _Group] = {}
    names: list[str] = []
    experiment = ""
    first_cfg: Optional[DictConfig] = None
    first_yaml = ""
    jobs: list[PlannedJob] = []
    for index, job_overrides in enumerate(batch):
        parsed = [table.get(o) for o in job_overrides]
        # a packager value (packager.subpath=a,b) changes the code: its own group, its own archive
        selection = tuple(o for o, p in zip(job_overrides, parsed) if not is_value_override(p, composer.is_group) or _packager_key(p))
        values = {str(p.key_or_group): p for p in parsed if is_value_override(p, composer.is_group)}
        group = groups.get(selection)
        if first_cfg is None or group is None:
            cfg = composer.compose(list(job_overrides))
            lower.check_config(cfg)
            if first_cfg is None:
                first_cfg, first_yaml = cfg, config_yaml(cfg)
                names = job_names(lower.task_of(cfg).name, len(batch))
                experiment = lower.experiment_name(cfg)
            cfg.name = experiment  # every job of the sweep lives in the one experiment
            label(f"job {names[index]}", names[index])
            job = lower.compile_job(cfg, site, job_name=names[index], package=packages.package(cfg))
            groups[selection] = _Group(cfg, job, {k: p.value() for k, p in values.items()})
        else:
            label(f"job {names[index]}", names[index])
            job = _patched(group, values, site, names[index])
        jobs.append(PlannedJob(job, render_job(job), tuple(job_overrides)))
    assert first_cfg is not None
    array = None
    if capabilities.of(jobs[0].target).arrays:
        array_ir = array_job([p.job for p in jobs], max_parallel)
        if array_ir is not None:
            label(f"array {array_ir.name}", array_ir.name)
            array = PlannedJob(array_ir, render_job(array_ir))
    return ExperimentPlan(
        site=site, name=experiment, kind="sweep", jobs=tuple(jobs), config_yaml=first_yaml, overrides=command,
        multirun=True, packages=packages, array=array, dryrun=bool(first_cfg.get("dryrun")),
        render_dir=first_cfg.get("render_dir"), wait=bool(first_cfg.get("wait")),
    )


def array_job(jobs: Sequence[Job], parallelism: Optional[int] = None) -> Optional[Job]:
    """ONE array job for sweep jobs that differ only in their task's values, else None.

    The rule: every job is a function task, and its IR equals the first's once name, job folder
    and task params are set aside — so array task i differs only by its ``function-<i>.yaml``.
    (Sweeps of inline or script tasks stay separate jobs.)
    """
    if len(jobs) < 2:
        return None
    first = jobs[0]
    for job in jobs:
        if job.task.kind != "function" or dataclasses.replace(job.task, params=first.task.params) != first.task:
            return None
        if dataclasses.replace(job, name=first.name, job_dir=first.job_dir, task=first.task) != first:
            return None
    name = f"{first.task.name}-array"
    return dataclasses.replace(
        first, name=name, job_dir=os.path.join(os.path.dirname(first.job_dir), name),
        array_tasks=tuple(ir.ArrayTask(j.name, j.task) for j in jobs), array_parallelism=parallelism,
    )
