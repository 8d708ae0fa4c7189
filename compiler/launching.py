"""Launch from a list of overrides without the Hydra CLI (the Python API, ``exp rerun``), and
``--resume``: complete an experiment whose launch died half-way.

Composition goes through Hydra's compose API on the same config module, plugins and user
config folders as the CLI, so ``nemorun.launch([...])`` and ``nemorun ...`` build the same jobs.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, TextIO

from omegaconf import DictConfig

from nemorun import compile as compiler
from nemorun.errors import ConfigError
from nemorun.store import ExperimentRecord, JobRecord


@contextlib.contextmanager
def hydra_context() -> Iterator[Any]:
    """The config loader of an initialised Hydra (initialising one for this block if needed)."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from hydra_plugins.nemorun_plugins import register_all

    register_all()
    if GlobalHydra.instance().is_initialized():
        yield GlobalHydra.instance().config_loader()
        return
    with initialize_config_module(config_module="nemorun.conf", version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


def _compose(overrides: Sequence[str]) -> DictConfig:
    from hydra import compose

    from nemorun.cli import CONFIG_NAME

    return compose(config_name=CONFIG_NAME, overrides=list(overrides))


def _sweep_batch(overrides: Sequence[str]) -> list[list[str]]:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    from nemorun.sweep import parse_overrides

    return [list(j) for j in BasicSweeper.split_arguments(parse_overrides(overrides), None)[0]]


def _is_group(loader: Any) -> Any:
    from functools import lru_cache

    @lru_cache(maxsize=None)
    def is_group(key: str) -> bool:
        return bool(loader.repository.group_exists(key.replace(".", "/")))

    return is_group


def launch_overrides(overrides: Sequence[str], *, multirun: Optional[bool] = None, out: TextIO = sys.stdout) -> Optional[Path]:
    """Run like the CLI; return the experiment folder (None for a dry run)."""
    from nemorun.cli import describe_error
    from nemorun.errors import NemorunError
    from nemorun.pipeline import default_site, launch_config
    from nemorun.sweep import parse_overrides, run_sweep

    try:
        with hydra_context() as loader:
            if multirun is None:
                multirun = any(o.is_sweep_override() for o in parse_overrides(overrides))
            if not multirun:
                result = launch_config(_compose(overrides), list(overrides), out=out)
                return result.record.path if result.record else None
            batch = _sweep_batch(overrides)
            first = _compose(batch[0])
            sweep = run_sweep(
                batch, _compose, default_site(), command_overrides=list(overrides), is_group=_is_group(loader),
                dryrun=bool(first.dryrun), render_dir=first.get("render_dir"), out=out,
            )
            return Path(sweep.record_path) if sweep.record_path else None
    except NemorunError:
        raise
    except Exception as exc:  # Hydra/OmegaConf composition errors: the same one line as the CLI
        code, message = describe_error(exc)
        raise (ConfigError(message) if code == 2 else NemorunError(message)) from exc


def plan_entries(meta: dict[str, Any], site: compiler.Site) -> list[Any]:
    """The experiment's jobs planned again, as at launch (same id, same submit directory)."""
    from nemorun.experiment import Entry, check_dependencies
    from nemorun.sweep import plan_sweep, stage_once

    overrides = list(meta.get("overrides", []))
    with hydra_context() as loader:
        if meta.get("multirun"):
            return [Entry(j.planned, j.overrides) for j in plan_sweep(
                _sweep_batch(overrides), _compose, site, command_overrides=overrides, is_group=_is_group(loader),
                package=stage_once(site)[1])]
        cfg = _compose(overrides)
        if cfg.get("experiment") is not None:
            from nemorun.multitask import plan_tasks

            return check_dependencies(plan_tasks(cfg, overrides, site))
        from nemorun.pipeline import plan

        return [Entry(p, tuple(overrides)) for p in plan(cfg, site)]


def _resume_array(record: ExperimentRecord, entries: list[Any], out: TextIO) -> None:
    from nemorun.experiment import submit_array
    from nemorun.sweep import plan_array

    [(name, tasks)] = record.meta["arrays"].items()
    array = plan_array(entries, record.job(name).array_parallelism)
    stored = {a: (record.job_dir(name) / a).read_text() for a in record.job(name).artifacts}
    if array is None or array.job.name != name or any(stored.get(a) != t for a, t in array.rendered.artifacts.items()):
        raise ConfigError(f"array {name} would differ from the recorded one (config changed since launch?); use rerun without --resume")
    pending = sum(1 for t in tasks if record.job(t).phase != "submitted")
    out.write(f"experiment {record.meta['name']}/{record.id}: resuming, {pending} of {len(tasks)} jobs not yet submitted\n")
    submit_array(record, array, out)


def resume(record: ExperimentRecord, *, out: TextIO = sys.stdout) -> None:
    """Submit the jobs of ``record`` that are not on the backend yet; nothing else."""
    from nemorun.experiment import submit_entries

    meta = record.meta
    site = compiler.Site(
        experiment_id=meta["id"], submit_dir=meta["submit_dir"], home=str(record.path.parent.parent.parent), python=sys.executable,
    )
    entries = plan_entries(meta, site)
    if [e.name for e in entries] != list(meta["jobs"]):
        raise ConfigError(f"experiment {record.id} no longer plans the same jobs (config files changed?); use rerun without --resume")
    if meta.get("arrays"):
        return _resume_array(record, entries, out)
    for e in entries:
        rec = record.try_job(e.name)
        if rec is not None and rec.phase == "submitted":
            continue
        if rec is not None:
            for name, text in e.planned.rendered.artifacts.items():
                stored = record.job_dir(e.name) / name
                if not e.depends_on and (not stored.exists() or stored.read_text() != text):
                    raise ConfigError(f"job {e.name}: {name} would differ from the recorded one (config changed since launch?); "
                                      "use rerun without --resume")
        else:
            rec = JobRecord(name=e.name, target=e.planned.rendered.target, overrides=list(e.overrides),
                            depends_on=list(e.depends_on), dependency_type=e.dependency_type)
            rec.artifacts = record.write_artifacts(e.name, e.planned.rendered.artifacts)
            record.save_job(rec)
    pending = sum(1 for e in entries if (record.try_job(e.name) or JobRecord(e.name, "")).phase != "submitted")
    out.write(f"experiment {meta['name']}/{record.id}: resuming, {pending} of {len(entries)} jobs not yet submitted\n")
    submit_entries(record, entries, out, quiet=len(entries) > 20)
