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

import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Container, Literal, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from nemorun import allocations, capabilities, ir, lower, progress
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
# sweeps of this many jobs get progress bars on a terminal (nemorun.progress) while they are
# composed and rendered; smaller ones plan in well under a second
PROGRESS_MIN_JOBS = 50


@dataclass(frozen=True)
class PlannedJob:
    """A job ready to send, plus what the record keeps about how it was made."""

    job: Job
    # None for a task of a job array: what is sent is the array's one script and table
    # (ExperimentPlan.array), so no per-task script is rendered, validated or written
    rendered: Optional[Rendered]
    overrides: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    dependency_type: str = "afterok"
    # an allocation (nemorun.allocations): each step's own overrides, recorded with the step's task
    # so `exp status` shows a packed sweep's values per task (``overrides``: what they share)
    step_overrides: tuple[tuple[str, ...], ...] = ()

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def target(self) -> str:
        return self.job.target


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
    batch = [as_typed(job) if any(o.startswith("++") for o in job) else job for job in batch]
    command = tuple(as_typed(command_overrides if command_overrides is not None else batch[0]))
    with batched_shell_checks() as label:
        if multirun:
            return _plan_sweep(batch, composer, site, command, packages, max_parallel, label)
        cfg = first if first is not None else composer.compose(list(batch[0]))
        if cfg.get("max_parallel") is not None:
            raise ConfigError(lower.MAX_PARALLEL_SINGLE)
        allocations.refuse_outside_sweep(cfg)  # allocation=NAME packs a sweep's jobs
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
    # tasks sharing an ``allocation:`` become one job (nemorun.allocations), ordered again
    return title, check_dependencies(allocations.group(check_dependencies(jobs), tasks, render_job))


# -- sweeps ----------------------------------------------------------------------------------


def _primitive(value: Any) -> bool:
    """A value that is itself once composed: not ``???``, not an interpolation nor an escaped one
    (``${x}``, ``\\${x}``), which only OmegaConf resolves, as it did for the sweep's first job."""
    return value is None or (isinstance(value, (int, float, str, bool)) and value != "???"
                             and not (isinstance(value, str) and "${" in value))


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


def _with_values(params: Mapping[str, Any], changes: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    """``params`` with ``changes`` set, copying only the dicts on a changed path: the rest is
    shared with the first job (the IR is never mutated), so a 10,000-job sweep holds 10,000
    small dicts, not 10,000 deep copies."""
    out = dict(params)
    for path, value in changes.items():
        node = out
        for part in path[:-1]:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, Mapping) else {}
            node = child
        node[path[-1]] = value
    return out


class _CallChecks:
    """:func:`nemorun.lower.check_function_call` once per distinct call shape. Its outcome
    depends only on the function, the parameter names and each value's type (binding names,
    ``isinstance`` against the annotation), so sweep jobs whose values differ but whose types
    do not share one check — every value is still checked, by its type."""

    def __init__(self) -> None:
        self._passed: set[tuple[Any, ...]] = set()

    def check(self, target: str, params: Mapping[str, Any], search_dir: str) -> None:
        key = (target, search_dir, tuple(sorted((k, type(v)) for k, v in params.items())))
        if key not in self._passed:
            lower.check_function_call(target, dict(params), search_dir)
            self._passed.add(key)


def _patched(group: _Group, values: Mapping[str, Any], site: Site, name: str, calls: _CallChecks) -> tuple[Job, bool]:
    """The job, and whether only its name, folder and task params differ from the group's first."""
    changed = {k: p for k, p in values.items() if group.values.get(k, _MISSING) != p.value() or k not in group.values}
    job_dir = os.path.join(site.experiment_dir(group.first.experiment_name), "jobs", name)
    if group.ir_patchable and changed and all(k.startswith("task.params.") for k in changed) and all(
        _primitive(p.value()) for p in changed.values()
    ):
        params = _with_values(group.first.task.params, {tuple(k.split(".")[2:]): ov.value() for k, ov in changed.items()})
        task = dataclasses.replace(group.first.task, params=params)
        if task.kind == "function":
            calls.check(str(task.target), params, group.first.package.source_dir or group.first.workdir)
        return dataclasses.replace(group.first, name=name, job_dir=job_dir, task=task), True
    try:
        apply_overrides(list(values.values()), group.cfg)
    except Exception as exc:
        raise ConfigError(f"job {name}: {_first_line(exc)}") from exc
    if not all(_primitive(p.value()) for p in values.values()):
        lower.check_config(group.cfg)
    return lower.compile_job(group.cfg, site, job_name=name, package=group.first.package), False


# Keys that describe the whole sweep (its experiment, dry run, wait, render folder, limit): the plan
# has ONE of each, so a sweep over them would silently use one value for every job (``allocation``:
# allocations.sweep_allocation says it in its own words).
SWEEP_WIDE = ("name", "dryrun", "wait", "render_dir", "max_parallel")
SWEPT_EXPERIMENT = ("experiment=NAME runs its own tasks and cannot be swept with -m; drop -m (overrides apply to "
                    "every task), or sweep one task: nemorun -m task=NAME key=a,b")


def _one_value_per_sweep(values: Mapping[str, Any], seen: dict[str, Any]) -> None:
    for key in SWEEP_WIDE:
        if key in values:
            value = values[key].value()
            if (type(value), value) != seen.setdefault(key, (type(value), value)):
                raise ConfigError(f"{key} is one setting of the whole sweep, not a value per job: give it one value")


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
    lowered: list[Job] = []
    # indexes of jobs known to differ from the first only in name, folder and task params
    same_but_params: set[int] = {0}
    calls = _CallChecks()
    # per distinct override text: (parsed, key if it sets a value else None, whether it selects the group)
    kinds: dict[str, tuple[Any, Optional[str], bool]] = {}

    def kind(text: str) -> tuple[Any, Optional[str], bool]:
        found = kinds.get(text)
        if found is None:
            p = table.get(text)
            value = is_value_override(p, composer.is_group)
            # a packager value (packager.subpath=a,b) changes the code: its own group, its own archive
            found = kinds[text] = (p, str(p.key_or_group) if value else None, not value or _packager_key(p))
        return found

    sweep_wide: dict[str, Any] = {}
    advance_planned, close_planned = progress.bar("planning", len(batch), min_total=PROGRESS_MIN_JOBS)
    try:
        for index, job_overrides in enumerate(batch):
            classified = [kind(o) for o in job_overrides]
            selection = tuple(o for o, (_, _, selects) in zip(job_overrides, classified) if selects)
            values = {key: p for p, key, _ in classified if key is not None}
            _one_value_per_sweep(values, sweep_wide)
            group = groups.get(selection)
            if first_cfg is None or group is None:
                cfg = composer.compose(list(job_overrides))
                if cfg.get("experiment") is not None:
                    raise ConfigError(SWEPT_EXPERIMENT)
                lower.check_config(cfg)
                if first_cfg is None:
                    first_cfg, first_yaml = cfg, config_yaml(cfg)
                    names = job_names(lower.task_of(cfg).name, len(batch))
                    experiment = lower.experiment_name(cfg)
                cfg.name = experiment  # every job of the sweep lives in the one experiment
                job = lower.compile_job(cfg, site, job_name=names[index], package=packages.package(cfg))
                groups[selection] = _Group(cfg, job, {k: p.value() for k, p in values.items()})
            else:
                job, params_only = _patched(group, values, site, names[index], calls)
                if params_only and group.first is lowered[0]:
                    same_but_params.add(index)
            lowered.append(job)
            advance_planned()
    finally:
        close_planned()
    assert first_cfg is not None
    max_parallel = lower.max_parallel(first_cfg, max_parallel)
    packed = allocations.sweep_allocation(first_cfg, max_parallel, batch)  # allocation=NAME: ONE job, a step per job
    array = None
    if packed is None and capabilities.of(lowered[0].target).arrays:
        array_ir = array_job(lowered, max_parallel, known_alike=same_but_params)
        if array_ir is not None:
            # ONE script and one table are what is sent: validate that, not a script per task
            label(f"array {array_ir.name}", array_ir.name)
            array = PlannedJob(array_ir, render_job(array_ir))
    jobs: list[PlannedJob] = []
    # a script per job is what takes long (an array has one, rendered above): a bar on a terminal
    # (a packed sweep, too, sends one script: allocations.pack_sweep renders it from the jobs)
    one_script = array is not None or packed is not None
    advance, close = progress.bar("rendering", len(lowered), min_total=len(lowered) + 1 if one_script else PROGRESS_MIN_JOBS)
    try:
        for job, job_overrides in zip(lowered, batch):
            if not one_script:
                label(f"job {job.name}", job.name)
            jobs.append(PlannedJob(job, None if one_script else render_job(job), tuple(job_overrides),
                                   *lower.parallel_lane(lowered, len(jobs), None if array else max_parallel)))
            advance()
    finally:
        close()
    if packed is not None:
        jobs = allocations.pack_sweep(packed, jobs, render_job)
    return ExperimentPlan(
        site=site, name=experiment, kind="sweep", jobs=tuple(jobs), config_yaml=first_yaml, overrides=command,
        multirun=True, packages=packages, array=array, dryrun=bool(first_cfg.get("dryrun")),
        render_dir=first_cfg.get("render_dir"), wait=bool(first_cfg.get("wait")),
    )


def array_job(jobs: Sequence[Job], parallelism: Optional[int] = None, *, known_alike: Container[int] = ()) -> Optional[Job]:
    """ONE array job for sweep jobs that differ only in their task's values, else None.

    The rule: every job is a function task, and its IR equals the first's once name, job folder
    and task params are set aside — so array task i differs only by its row of ``tasks.jsonl``.
    (Sweeps of inline or script tasks stay separate jobs.) ``known_alike``: indexes the planner
    made from the first job by changing only those (their comparison is skipped).
    """
    if len(jobs) < 2:
        return None
    first = jobs[0]
    if first.task.kind != "function":
        return None
    for index, job in enumerate(jobs):
        if index in known_alike:
            continue
        if job.task.kind != "function" or dataclasses.replace(job.task, params=first.task.params) != first.task:
            return None
        if dataclasses.replace(job, name=first.name, job_dir=first.job_dir, task=first.task) != first:
            return None
    name = f"{first.task.name}-array"
    return dataclasses.replace(
        first, name=name, job_dir=os.path.join(os.path.dirname(first.job_dir), name),
        array_tasks=tuple(ir.ArrayTask(j.name, j.task) for j in jobs), array_parallelism=parallelism,
    )
