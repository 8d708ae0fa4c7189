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
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Container, Iterator, Literal, Mapping, Optional, Sequence

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
    # every job, in an order where each comes after the jobs it depends on (an array's tasks:
    # an ArrayTaskJobs, each made when read)
    jobs: Sequence[PlannedJob]
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
    # the user's config folders it was composed from, in search order (copied into the record:
    # --resume and rerun compose from those copies)
    config_dirs: tuple[str, ...] = field(default_factory=lambda: tuple(
        os.path.abspath(os.path.expanduser(d)) for d in os.environ.get("NEMORUN_CONFIG_PATH", "").split(os.pathsep) if d))

    @property
    def target(self) -> str:
        return self.jobs[0].target

    def record_names(self) -> list[str]:
        """What ``experiment.json`` lists (:func:`nemorun.allocations.record_names`), read
        without making each array task's job."""
        if isinstance(self.jobs, ArrayTaskJobs):
            return list(self.jobs.names)
        return allocations.record_names(self.jobs)

    def task_names(self) -> list[str]:
        """What the user launched (:func:`nemorun.allocations.task_names`): an array's tasks by name."""
        if isinstance(self.jobs, ArrayTaskJobs):
            return list(self.jobs.names)
        return allocations.task_names(self.jobs)

    def job_overrides(self) -> Sequence[Sequence[str]]:
        """Each job's overrides, in ``jobs`` order (an array's: the batch itself, not a copy)."""
        if isinstance(self.jobs, ArrayTaskJobs):
            return self.jobs.overrides
        return [p.overrides for p in self.jobs]


@dataclass(frozen=True)
class ArrayTaskJobs(ir.ComputedSequence[PlannedJob]):
    """The tasks of an array sweep as jobs (record names, folders, overrides), each made when read.

    Why: what is sent is the array (``ExperimentPlan.array``); the tasks are only recorded and
    shown, a few fields each. Holding a Job and a PlannedJob per task from planning to the end of
    the launch made a 10,000-task dry run cost ~20 MB more than a 1,000-task one.
    """

    # the sweep's first job: every task is it with its own name, folder and task
    first: Job
    tasks: Sequence[ir.ArrayTask]
    # each task's overrides (the batch given to plan())
    overrides: Sequence[Sequence[str]]

    @property
    def names(self) -> Sequence[str]:
        tasks = self.tasks
        return tasks.names if isinstance(tasks, ir.ArrayTable) else [t.name for t in tasks]

    def __len__(self) -> int:
        return len(self.tasks)

    def _item(self, index: int) -> PlannedJob:
        task = self.tasks[index]
        job = dataclasses.replace(self.first, name=task.name, task=task.task,
                                  job_dir=os.path.join(os.path.dirname(self.first.job_dir), task.name))
        return PlannedJob(job, None, tuple(self.overrides[index]))


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
    batch = _TypedBatch(batch)
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


class _TypedBatch(ir.ComputedSequence[Sequence[str]]):
    """Each job's overrides as typed (``++`` taken off free-form keys: what the user wrote), made
    when read. The batch given is the caller's and lives as long as the plan: a typed copy of it
    would be one more list and string per job (~1 MB at 10,000 jobs)."""

    def __init__(self, batch: Sequence[Sequence[str]]):
        self._batch = batch

    def __len__(self) -> int:
        return len(self._batch)

    def _item(self, index: int) -> Sequence[str]:
        job = self._batch[index]
        return as_typed(job) if any(o.startswith("++") for o in job) else job


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
    grouped = check_dependencies(allocations.group(check_dependencies(jobs), tasks, render_job))
    folders: dict[str, str] = {}
    for name in allocations.record_names(grouped):
        other = folders.setdefault(name.lower(), name)
        if other != name:  # jobs/<name>/ holds each record: one folder on macOS's default file system
            raise ConfigError(f"job names '{other}' and '{name}' differ only by case: their record folders would be one "
                              "folder on a case-insensitive file system; rename one")
    return title, grouped


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


def job_names(task_name: str, count: int) -> Sequence[str]:
    return ir.NumberedNames(task_name, count)


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


_with_values = ir.with_values
# a task of the table that keeps the first job's value at a column's path
_KEEP = object()


class _Rows:
    """The task params of the sweep jobs patched from its first job, as columns (one per changed
    path, a value per job): such a job is not lowered to a Job of its own while planning, and an
    array sweep never makes one (ir.ArrayTable). Row i of a job that is not such a job keeps
    every value (_KEEP): that job is held as a Job."""

    def __init__(self, base: Mapping[str, Any]):
        self.base = base
        self.columns: dict[tuple[str, ...], list[Any]] = {}
        self.count = 0

    def fits(self, paths: Sequence[tuple[str, ...]]) -> bool:
        """No path a prefix of another (nor of a column's): then the order in which a job's values
        are set cannot matter, and neither can setting a kept value again."""
        new = [p for p in paths if p not in self.columns]
        known = [*self.columns, *paths]
        return not any(a != b and b[:len(a)] == a or a != b and a[:len(b)] == b for a in new for b in known)

    def add(self, changes: Mapping[tuple[str, ...], Any]) -> None:
        for path in changes:
            if path not in self.columns:
                self.columns[path] = [_KEEP] * self.count
        for path, column in self.columns.items():
            column.append(changes.get(path, _KEEP))
        self.count += 1

    def params(self, index: int) -> dict[str, Any]:
        return _with_values(self.base, {p: c[index] for p, c in self.columns.items() if c[index] is not _KEEP})

    def table(self, base: ir.Task, names: Sequence[str]) -> Optional[ir.ArrayTable]:
        """The rows as an ir.ArrayTable (kept values filled in from ``base``), or None when a column's
        path is not in ``base``'s params (a task adding a parameter): the tasks are then made one by one."""
        kept = {}
        for path in self.columns:
            node: Any = base.params
            for part in path:
                if not isinstance(node, Mapping) or part not in node:
                    return None
                node = node[part]
            kept[path] = node
        columns = tuple((path, [kept[path] if v is _KEEP else v for v in column]) for path, column in self.columns.items())
        return ir.ArrayTable(base, names, columns)


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


def _param_changes(group: _Group, values: Mapping[str, Any]) -> Optional[dict[tuple[str, ...], Any]]:
    """The task params a job sets differently from its group's first job (path under params ->
    value), when that is ALL it changes and the first job's IR can be patched; else None."""
    changed = {k: p for k, p in values.items() if group.values.get(k, _MISSING) != p.value() or k not in group.values}
    if group.ir_patchable and changed and all(k.startswith("task.params.") for k in changed) and all(
        _primitive(p.value()) for p in changed.values()
    ):
        return {tuple(k.split(".")[2:]): ov.value() for k, ov in changed.items()}
    return None


def _checked_params(group: _Group, changes: Mapping[tuple[str, ...], Any], calls: _CallChecks) -> dict[str, Any]:
    params = _with_values(group.first.task.params, changes)
    if group.first.task.kind == "function":
        calls.check(str(group.first.task.target), params, group.first.package.source_dir or group.first.workdir)
    return params


def _patched(group: _Group, values: Mapping[str, Any], site: Site, name: str, calls: _CallChecks) -> Job:
    """The job, its group's first with other values (patched in the IR, or merged and lowered again)."""
    changes = _param_changes(group, values)
    if changes is not None:
        task = dataclasses.replace(group.first.task, params=_checked_params(group, changes, calls))
        job_dir = os.path.join(site.experiment_dir(group.first.experiment_name), "jobs", name)
        return dataclasses.replace(group.first, name=name, job_dir=job_dir, task=task)
    try:
        apply_overrides(list(values.values()), group.cfg)
    except Exception as exc:
        raise ConfigError(f"job {name}: {_first_line(exc)}") from exc
    if not all(_primitive(p.value()) for p in values.values()):
        lower.check_config(group.cfg)
    return lower.compile_job(group.cfg, site, job_name=name, package=group.first.package)


# Keys that describe the whole sweep (its experiment, dry run, wait, render folder, limit): the plan
# has ONE of each, so a sweep over them would silently use one value for every job (``allocation``:
# allocations.sweep_allocation says it in its own words).
SWEEP_WIDE = ("name", "dryrun", "wait", "render_dir", "max_parallel")
SWEPT_EXPERIMENT = ("experiment=NAME runs its own tasks and cannot be swept with -m; drop -m (overrides apply to "
                    "every task), or sweep one task: nemorun -m task=NAME key=a,b")


class PackedTexts(Mapping[str, str]):
    """A sweep job's artifacts (or views), each kept deflated against the first job's text of
    the same name as zlib's preset dictionary, and inflated when read.

    Why: a sweep's jobs differ in a few names and values, so a 5 KB TrainJob + ConfigMap packs
    into ~70 bytes; holding every job's text as is made a 10,000-job plan ~50 MB larger than a
    1,000-job one. A text equal to the first job's is kept as that one object, and a short one
    as is (deflating it would cost more time than the bytes it saves). Reads give back the
    exact text (any ``str``: UTF-8 with surrogatepass)."""

    __slots__ = ("_names", "_refs", "_blobs")

    def __init__(self, texts: Mapping[str, str], refs: Mapping[str, tuple[str, bytes]]) -> None:
        self._names = tuple(texts)
        self._refs = tuple(refs.get(name, ("", b""))[1] for name in self._names)
        self._blobs = tuple(_pack(texts[name], refs.get(name, ("", b""))) for name in self._names)

    def __getitem__(self, name: str) -> str:
        try:
            index = self._names.index(name)
        except ValueError:
            raise KeyError(name) from None
        blob = self._blobs[index]
        if isinstance(blob, str):
            return blob
        ref = self._refs[index]
        inflate = zlib.decompressobj(zdict=ref) if ref else zlib.decompressobj()
        return (inflate.decompress(blob) + inflate.flush()).decode("utf-8", "surrogatepass")

    def __contains__(self, name: object) -> bool:  # without inflating (Mapping's would read the text)
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"PackedTexts({dict(self)!r})"


_PACK_MIN = 512  # characters: shorter texts are kept as they are


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _pack(text: str, ref: tuple[str, bytes]) -> str | bytes:
    first, data = ref
    if text == first:
        return first
    if len(text) < _PACK_MIN:
        return text
    # memLevel 1: a 5 KB text against a 5 KB dictionary packs as small as with the default 8, twice as fast
    deflate = (zlib.compressobj(6, zlib.DEFLATED, 15, 1, zlib.Z_DEFAULT_STRATEGY, data) if data else
               zlib.compressobj(6, zlib.DEFLATED, 15, 1))
    return deflate.compress(_encode(text)) + deflate.flush()


class _Packer:
    """Keeps the first rendered job of a sweep as is (it is shown, and the others' dictionary)
    and packs every later one (:class:`PackedTexts`)."""

    def __init__(self) -> None:
        self._artifacts: Optional[dict[str, tuple[str, bytes]]] = None
        self._views: dict[str, tuple[str, bytes]] = {}

    def __call__(self, rendered: Rendered) -> Rendered:
        if self._artifacts is None:
            self._artifacts = {name: (text, _encode(text)) for name, text in rendered.artifacts.items()}
            self._views = {name: (text, _encode(text)) for name, text in rendered.views.items()}
            return rendered
        return dataclasses.replace(rendered, artifacts=PackedTexts(rendered.artifacts, self._artifacts),
                                   views=PackedTexts(rendered.views, self._views))


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
    names: Sequence[str] = ()
    experiment = ""
    first_cfg: Optional[DictConfig] = None
    first_yaml = ""
    # a Job per sweep job, except None for a job patched from the first one in its task params
    # only: that job is row i of ``rows`` (made into a Job only if the sweep is not an array)
    lowered: list[Optional[Job]] = []
    rows: Optional[_Rows] = None
    calls = _CallChecks()
    # (key if the override sets a value else None, whether it selects the group), per kind of
    # override: it depends on the key and the override's type only, not on the value
    kinds: dict[tuple[Any, ...], tuple[Optional[str], bool]] = {}

    def kind(text: str) -> tuple[Any, Optional[str], bool]:
        p = table.get(text)
        shape = (p.key_or_group, p.type, p.package)
        found = kinds.get(shape)
        if found is None:
            value = is_value_override(p, composer.is_group)
            # a packager value (packager.subpath=a,b) changes the code: its own group, its own archive
            found = kinds[shape] = (str(p.key_or_group) if value else None, not value or _packager_key(p))
        return (p, *found)

    sweep_wide: dict[str, Any] = {}
    job: Optional[Job]
    advance_planned, close_planned = progress.bar("planning", len(batch), min_total=PROGRESS_MIN_JOBS)
    try:
        for index, job_overrides in enumerate(batch):
            classified = [kind(o) for o in job_overrides]
            selection = tuple(o for o, (_, _, selects) in zip(job_overrides, classified) if selects)
            values = {key: p for p, key, _ in classified if key is not None}
            _one_value_per_sweep(values, sweep_wide)
            group = groups.get(selection)
            # Hydra MERGES a mapping value into the mapping it overrides: patched onto the group's
            # config, job i would keep the keys of jobs 0..i-1, so such a job is composed afresh
            merges = any(isinstance(p.value(), dict) for p in values.values())
            if first_cfg is None or group is None or merges:
                table.remember(job_overrides)  # merged by Hydra: its lines' literals, not a parse each
                cfg = composer.compose(list(job_overrides))
                if cfg.get("experiment") is not None:
                    raise ConfigError(SWEPT_EXPERIMENT)
                lower.check_config(cfg)
                if first_cfg is None:
                    first_cfg, first_yaml = cfg, config_yaml(cfg)
                    names = job_names(lower.task_of(cfg).name, len(batch))
                    experiment = lower.experiment_name(cfg)
                cfg.name = experiment  # every job of the sweep lives in the one experiment
                composed = lower.compile_job(cfg, site, job_name=names[index], package=packages.package(cfg))
                groups.setdefault(selection, _Group(cfg, composed, {k: p.value() for k, p in values.items()}))
                rows = rows or _Rows(composed.task.params)
                rows.add({})
                job = composed
            else:
                assert rows is not None
                changes = _param_changes(group, values) if group.first is lowered[0] else None
                if changes is not None and rows.fits(list(changes)):
                    _checked_params(group, changes, calls)
                    rows.add(changes)
                    job = None
                else:
                    table.remember(job_overrides)  # may be merged by Hydra (_patched)
                    job = _patched(group, values, site, names[index], calls)
                    rows.add({})
            lowered.append(job)
            advance_planned()
    finally:
        close_planned()
    assert first_cfg is not None and rows is not None
    first = lowered[0]
    assert first is not None
    jobs_dir = os.path.dirname(first.job_dir)

    def sweep_plan(jobs: Sequence[PlannedJob], array: Optional[PlannedJob]) -> ExperimentPlan:
        assert first_cfg is not None
        return ExperimentPlan(
            site=site, name=experiment, kind="sweep", jobs=jobs, config_yaml=first_yaml, overrides=command,
            multirun=True, packages=packages, array=array, dryrun=bool(first_cfg.get("dryrun")),
            render_dir=first_cfg.get("render_dir"), wait=bool(first_cfg.get("wait")),
        )

    def job_at(index: int) -> Job:
        job = lowered[index]
        if job is not None:
            return job
        task = dataclasses.replace(first.task, params=rows.params(index))
        return dataclasses.replace(first, name=names[index], job_dir=os.path.join(jobs_dir, names[index]), task=task)

    max_parallel = lower.max_parallel(first_cfg, max_parallel)
    packed = allocations.sweep_allocation(first_cfg, max_parallel, batch)  # allocation=NAME: ONE job, a step per job
    array = None
    if packed is None and capabilities.of(first.target).arrays:
        array_tasks = None
        if len(batch) > 1 and first.task.kind == "function" and all(j is None for j in lowered[1:]):
            array_tasks = rows.table(first.task, names)  # every job a row: no Job per task, ever
        if array_tasks is not None:
            array_ir: Optional[Job] = _array_of(first, array_tasks, max_parallel)
        else:
            array_ir = array_job([job_at(i) for i in range(len(lowered))], max_parallel,
                                 known_alike={i for i, j in enumerate(lowered) if j is None})
        if array_ir is not None:
            # ONE script and one table are what is sent: validate that, not a script per task
            label(f"array {array_ir.name}", array_ir.name)
            array = PlannedJob(array_ir, render_job(array_ir))
            return sweep_plan(ArrayTaskJobs(first, array_ir.array_tasks, batch), array)
    jobs: list[PlannedJob] = []
    # a script per job is what takes long: a bar on a terminal (a packed sweep sends one script:
    # allocations.pack_sweep renders it from the jobs)
    one_script = packed is not None
    advance, close = progress.bar("rendering", len(lowered), min_total=len(lowered) + 1 if one_script else PROGRESS_MIN_JOBS)
    pack = _Packer()
    try:
        for index, job_overrides in enumerate(batch):
            job = job_at(index)
            if not one_script:
                label(f"job {job.name}", job.name)
            # lower.parallel_lane reads the names of the jobs before this one only
            jobs.append(PlannedJob(job, None if one_script else pack(render_job(job)), tuple(job_overrides),
                                   *lower.parallel_lane(jobs, len(jobs), max_parallel)))  # type: ignore[arg-type]
            advance()
    finally:
        close()
    if packed is not None:
        jobs = allocations.pack_sweep(packed, jobs, render_job)
    return sweep_plan(tuple(jobs), None)


def array_job(jobs: Sequence[Job], parallelism: Optional[int] = None, *, known_alike: Container[int] = ()) -> Optional[Job]:
    """ONE array job for sweep jobs that differ only in their task's values, else None.

    The rule: every job is a function task, and its IR equals the first's once name, job folder
    and task params are set aside — so array task i differs only by its row of ``tasks.jsonl``.
    (Sweeps of inline or script tasks stay separate jobs.) ``known_alike``: indexes the planner
    made from the first job by changing only those (their comparison is skipped). The planner
    calls this only when a job was lowered on its own; otherwise it builds the table directly.
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
    return _array_of(first, tuple(ir.ArrayTask(j.name, j.task) for j in jobs), parallelism)


def _array_of(first: Job, tasks: Sequence[ir.ArrayTask], parallelism: Optional[int]) -> Job:
    name = f"{first.task.name}-array"
    return dataclasses.replace(first, name=name, job_dir=os.path.join(os.path.dirname(first.job_dir), name),
                               array_tasks=tasks, array_parallelism=parallelism)
