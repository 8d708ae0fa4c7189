"""Multi-task experiments (``experiment=<option>``): named tasks with ``depends_on``, ONE experiment.

Each task is composed like a command line of its own: the command line's overrides (minus the
``experiment`` ones) followed by the task's ``overrides``, so ``executor=slurm`` on the command
line moves every task while a task can still pick its own executor. Job names are the task
names. Unknown names in ``depends_on`` and cycles are config errors before anything is recorded.
How dependencies are enforced (native ``--dependency`` on Slurm, nemorun waiting elsewhere) is
in :mod:`nemorun.experiment`.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence, TextIO

from omegaconf import DictConfig, OmegaConf

from nemorun import lower
from nemorun import packaging
from nemorun.errors import ConfigError
from nemorun.experiment import Entry, check_dependencies, create_record, submit_entries
from nemorun.pipeline import LaunchResult, PlannedJob, format_dryrun, render_job
from nemorun.render import is_env_name

DEPENDENCY_TYPES = ("afterok", "afterany", "afternotok")


def _own(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return key == "experiment" or key.startswith("experiment.")


def experiment_title(cfg: DictConfig) -> str:
    return str(cfg.get("name") or cfg.experiment.get("name") or "experiment")


def plan_tasks(
    cfg: DictConfig, overrides: Sequence[str], site: lower.Site, packages: Optional[packaging.Packages] = None
) -> list[Entry]:
    """Every task composed, compiled, rendered and validated (in the order written).

    The code is packed once for the experiment (``packages``): tasks that keep the same packager
    config share one archive; a task whose overrides pick another packager gets its own.
    """
    packages = packages or packaging.Packages(site)
    from hydra import compose

    from nemorun.cli import CONFIG_NAME

    tasks = cfg.experiment.tasks
    if not tasks:
        raise ConfigError("experiment has no tasks: list them under experiment.tasks")
    title = experiment_title(cfg)
    base = [o for o in overrides if not _own(o)]
    entries: list[Entry] = []
    for name, spec in tasks.items():
        if not is_env_name(str(name)):
            raise ConfigError(f"experiment task name {name!r}: use letters, digits and _")
        if spec.dependency_type not in DEPENDENCY_TYPES:
            raise ConfigError(f"experiment.tasks.{name}.dependency_type={spec.dependency_type!r}: one of {', '.join(DEPENDENCY_TYPES)}")
        task_overrides = [*base, *[str(o) for o in spec.overrides], f"name={title}"]
        try:
            task_cfg = compose(config_name=CONFIG_NAME, overrides=task_overrides)
        except Exception as exc:
            from nemorun.cli import describe_error

            raise ConfigError(f"experiment task {name}: {describe_error(exc)[1]}") from exc
        lower.check_config(task_cfg)
        job = lower.compile_job(task_cfg, site, job_name=str(name), package=packages.package(task_cfg))
        entries.append(Entry(PlannedJob(job, render_job(job)), tuple(task_overrides),
                             tuple(str(d) for d in spec.depends_on), str(spec.dependency_type)))
    return entries


def launch(cfg: DictConfig, overrides: Sequence[str], site: lower.Site, out: TextIO = sys.stdout) -> LaunchResult:
    from nemorun.experiment import write_render_dir

    packages = packaging.Packages(site)
    entries = check_dependencies(plan_tasks(cfg, overrides, site, packages))
    planned = tuple(e.planned for e in entries)
    title = experiment_title(cfg)
    if cfg.get("render_dir"):
        write_render_dir(planned, str(cfg.render_dir), single=False)
    if cfg.dryrun:
        for e in entries:
            after = f" after {', '.join(e.depends_on)} ({e.dependency_type})" if e.depends_on else ""
            out.write(f"# task {e.name}{after}\n")
        out.write(format_dryrun(planned))
        return LaunchResult(site.experiment_id, title, planned)
    record = create_record(
        home=site.home, name=title, experiment_id=site.experiment_id, target=planned[0].rendered.target,
        config_yaml=OmegaConf.to_yaml(cfg), overrides=overrides, submit_dir=site.submit_dir, entries=entries,
        kind="experiment", multirun=False, packages=packages,
    )
    out.write(f"experiment {title}/{site.experiment_id}: {len(entries)} tasks in {record.path}\n")
    out.flush()
    submit_entries(record, entries, out)
    return LaunchResult(site.experiment_id, title, planned, record)
