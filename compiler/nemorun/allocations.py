"""Tasks of a multi-task experiment that share an ``allocation:`` become ONE Slurm job.

Why here and not in the planner or the target: the planner lowers every task on its own (each
keeps exactly what its overrides asked for); grouping is a second, separate decision that only
needs the lowered jobs, and the Slurm target renders whatever :class:`nemorun.ir.Job` it gets.
So :func:`group` turns the planned tasks of each allocation into one planned job whose IR holds
them as :class:`nemorun.ir.Step` s:

- every task asks the same resources, partition, image... (:func:`_component`): a **job group**,
  one allocation, each task its own ``srun --overlap`` step;
- otherwise a **heterogeneous job**: one ``#SBATCH hetjob`` component per task, each step
  ``srun --het-group=i``.

What Slurm cannot do is refused here, in one line, before anything is rendered: an allocation on
an executor without ``allocations`` in its capabilities, tasks of one allocation on different
executors, clusters or job folders, with different job-wide options (retries, time limit,
signal...), or depending on each other (steps of one job start together; Slurm cannot order them).
Dependencies between an allocation and other jobs work as between jobs: a task's ``depends_on``
naming a task of an allocation waits for the whole allocation.

Without an experiment file, a sweep takes a top-level ``allocation=NAME`` (:func:`pack_sweep`):
every job of ``nemorun -m ...`` becomes a step of ONE job through the same :func:`group`, so the
same rules and refusals hold; the step names are the sweep's job names. It replaces the job array
(which is N jobs to Slurm's scheduler) and cannot take ``max_parallel`` (the steps of one job run
together). Anywhere but a sweep it is refused (:func:`refuse_outside_sweep`): a lone job packed
alone would be the same job, so the key would silently do nothing.

The record keeps one folder per allocation (what is submitted) and one per task, whose handle
names the allocation's Slurm job and the step (:func:`nemorun.submitters.slurm.step_handle`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar

from nemorun import capabilities
from nemorun.errors import ConfigError
from nemorun.ir import Job, Rendered, Step
from nemorun.render import is_env_name
from nemorun.tunnels import tunnel_spec

# sbatch options that belong to one component of a heterogeneous job (the rest are job-wide and
# taken from the first component, so they must agree across the allocation's tasks)
COMPONENT_FIELDS = ("partition", "account", "qos", "constraint", "exclude", "reservation", "exclusive",
                    "additional_parameters")
# executor options that are the whole job's: every task of an allocation must ask the same
JOB_WIDE_FIELDS = ("time", "signal", "job_name", "comment", "dependency_type", "setup_lines", "job_dir")


# an error names at most this many tasks of an allocation (a packed sweep may have hundreds)
SHOWN = 6
# a planned job (nemorun.plan.PlannedJob: job, rendered, depends_on, ...); not imported, plan imports us
P = TypeVar("P", bound=Any)


def allocation_of(spec: Any) -> Optional[str]:
    value = spec.get("allocation") if hasattr(spec, "get") else getattr(spec, "allocation", None)
    return None if value is None else str(value)


def group(jobs: Sequence[P], tasks: Mapping[str, Any], render: Callable[[Job], Rendered]) -> list[P]:
    """``jobs`` (planned tasks, in dependency order) with each allocation's tasks replaced by ONE
    planned job at the place of its first task; ``tasks`` is ``experiment.tasks`` (task name ->
    its spec, read for ``allocation``). An allocation of one task is that task's own job."""
    members: dict[str, list[P]] = {}
    for p in jobs:
        alloc = allocation_of(tasks[p.name]) if p.name in tasks else None
        if alloc is not None:
            members.setdefault(alloc, []).append(p)
    members = {a: ps for a, ps in members.items() if len(ps) > 1}
    if not members:
        return list(jobs)
    names = {p.name for p in jobs}
    owner = {p.name: alloc for alloc, ps in members.items() for p in ps}
    grouped: dict[str, P] = {}
    for alloc, ps in members.items():
        if not is_env_name(alloc):
            raise ConfigError(f"allocation {alloc!r} (tasks {', '.join(p.name for p in ps[:SHOWN])}): use letters, digits and _, starting with a letter or _")
        if alloc in names:
            raise ConfigError(f"allocation '{alloc}' has the name of a task; name it differently")
        grouped[alloc] = _allocation(alloc, ps, owner, render)
    out: list[P] = []
    for p in jobs:
        alloc = owner.get(p.name)
        if alloc is None:
            deps = tuple(dict.fromkeys(owner.get(d, d) for d in p.depends_on))
            out.append(p if deps == p.depends_on else dataclasses.replace(p, depends_on=deps))
        elif p is members[alloc][0]:
            out.append(grouped[alloc])
    return out


def refuse_outside_sweep(cfg: Any) -> None:
    """``allocation=NAME`` on a launch that is not a sweep: one line, before anything is planned."""
    name = allocation_of(cfg)
    if name is None:
        return
    if cfg.get("experiment") is not None:
        raise ConfigError(f"allocation={name} packs the jobs of a sweep (-m); an experiment's tasks name their own: "
                          "set allocation: under experiment.tasks.<task> and drop allocation=")
    raise ConfigError(f"allocation={name} packs the jobs of a sweep into one Slurm job; this launch is one job: drop it, "
                      "or sweep with -m and a,b values")


def sweep_allocation(cfg: Any, max_parallel: Optional[int], batch: Sequence[Sequence[str]] = ()) -> Optional[str]:
    """The sweep's ``allocation=NAME`` (None: its jobs are separate jobs, or an array); ``cfg`` is
    its first job's config, ``batch`` every job's overrides (``allocation`` itself cannot vary)."""
    name = allocation_of(cfg)
    values = {o.split("=", 1)[1] for job in batch for o in job if o.lstrip("+~").split("=", 1)[0] == "allocation"}
    if len(values) > 1:
        raise ConfigError(f"allocation={','.join(sorted(values))}: the whole sweep is packed into ONE job, so allocation "
                          "takes one name; sweep other keys")
    if name is not None and max_parallel is not None:
        raise ConfigError(f"allocation={name} runs every job of the sweep at once, as steps of one Slurm job, so "
                          f"max_parallel={max_parallel} cannot limit them: drop one of the two")
    return name


def pack_sweep(name: str, jobs: Sequence[P], render: Callable[[Job], Rendered]) -> list[P]:
    """The sweep's planned jobs as ONE job named ``name``, each a step (the rules of :func:`group`)."""
    return group(jobs, {p.name: {"allocation": name} for p in jobs}, render)


def task_names(jobs: Sequence[Any]) -> list[str]:
    """What the user launched: the tasks (or sweep jobs), an allocation counted by its steps."""
    return [n for p in jobs for n in ([s.name for s in p.job.steps] or [p.name])]


def record_names(jobs: Sequence[Any]) -> list[str]:
    """Every job's record name, each allocation followed by its steps (the tasks it runs):
    what ``experiment.json`` lists, so ``nemorun exp status/logs/cancel`` take task names."""
    return [n for p in jobs for n in (p.name, *(s.name for s in p.job.steps))]


def _component(job: Job) -> tuple[Any, ...]:
    """What must be equal for two tasks to share one allocation (a job group)."""
    return (job.resources, job.image, job.mounts, *(_value(job.executor, f) for f in COMPONENT_FIELDS))


def _value(executor: Any, name: str) -> Any:
    value = getattr(executor, name, None)
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), repr(v)) for k, v in value.items()))
    return tuple(value) if isinstance(value, list) else value


def _check(alloc: str, ps: Sequence[Any], owner: Mapping[str, str]) -> None:
    first = ps[0].job
    shown = ", ".join(p.name for p in ps[:SHOWN]) + (f" and {len(ps) - SHOWN} more" if len(ps) > SHOWN else "")
    where = f"allocation '{alloc}' (tasks {shown})"
    for p in ps:
        job = p.job
        if job.target != first.target:
            raise ConfigError(f"{where}: task {p.name} runs on executor={job.target}, task {ps[0].name} on "
                              f"executor={first.target}; the tasks of one allocation share one Slurm job")
        if not capabilities.of(job.target).allocations:
            raise ConfigError(f"{where}: executor={job.target} cannot run tasks in one allocation (Slurm job groups "
                              "and heterogeneous jobs); use executor=slurm or drop allocation")
        if tunnel_spec(job.executor.tunnel) != tunnel_spec(first.executor.tunnel):
            raise ConfigError(f"{where}: task {p.name} is sent to another cluster (executor.tunnel) than task "
                              f"{ps[0].name}; one allocation is one job on one cluster")
        for name in JOB_WIDE_FIELDS:
            mine, theirs = _value(job.executor, name), _value(first.executor, name)
            if mine != theirs:
                raise ConfigError(f"{where}: executor.{name} is {theirs!r} for task {ps[0].name} but {mine!r} for "
                                  f"task {p.name}; it is the whole job's, so the tasks must agree")
        for name, mine, theirs in (("retries", job.retries, first.retries), ("packager", job.package.sha256, first.package.sha256)):
            if mine != theirs:
                raise ConfigError(f"{where}: {name} differs between task {ps[0].name} and task {p.name}; "
                                  "it is the whole job's, so the tasks must agree")
        if job.array_tasks or any(str(k).replace("_", "-") == "array" for k in job.executor.additional_parameters):
            raise ConfigError(f"{where}: task {p.name} is a job array, which cannot be one step of a job")
        if job.executor.dependency_type == "singleton":
            raise ConfigError(f"{where}: executor.dependency_type=singleton is a job's, not a step's; drop it")
        inside = [d for d in p.depends_on if owner.get(d) == alloc]
        if inside:
            raise ConfigError(f"{where}: task {p.name} depends on task {inside[0]} of the same allocation, but "
                              "the steps of one Slurm job start together and cannot be ordered; use another "
                              "allocation or drop the dependency")
    types = {p.dependency_type for p in ps if p.depends_on}
    if len(types) > 1:
        raise ConfigError(f"{where}: the tasks wait for their upstream jobs with different dependency_type "
                          f"({', '.join(sorted(types))}); one job has one dependency type")


def _allocation(alloc: str, ps: Sequence[P], owner: Mapping[str, str], render: Callable[[Job], Rendered]) -> P:
    _check(alloc, ps, owner)
    het = len({_component(p.job) for p in ps}) > 1
    steps = tuple(
        Step(name=p.name, task=p.job.task, env=p.job.env, resources=p.job.resources, launcher=p.job.launcher,
             executor=p.job.executor, image=p.job.image, mounts=p.job.mounts, het_group=i if het else None)
        for i, p in enumerate(ps)
    )
    first = ps[0]
    job = dataclasses.replace(first.job, name=alloc, job_dir=os.path.join(os.path.dirname(first.job.job_dir), alloc),
                              steps=steps)
    upstream = tuple(dict.fromkeys(owner.get(d, d) for p in ps for d in p.depends_on))
    dependency_type = next((p.dependency_type for p in ps if p.depends_on), first.dependency_type)
    common = tuple(o for o in first.overrides if all(o in p.overrides for p in ps))
    return dataclasses.replace(first, job=job, rendered=render(job), depends_on=upstream, dependency_type=dependency_type,
                               overrides=common, step_overrides=tuple(tuple(p.overrides) for p in ps))
