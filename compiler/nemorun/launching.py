"""The front ends' common path: overrides → compose → :func:`nemorun.plan.plan` → :func:`nemorun.execute.execute`.

Used by the CLI (``nemorun ...``), the Python API (``nemorun.launch``), ``exp rerun`` and
``--resume``; the multirun launcher plugin calls plan/execute with Hydra's own composer. Each
function picks a composer (:mod:`nemorun.compose`) and a site, and nothing else: every check and
every record happens in plan/execute, the same for all of them.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence, TextIO

from omegaconf import DictConfig

from nemorun import compose
from nemorun.errors import ConfigError
from nemorun.execute import Outcome, execute, raise_if_failed
from nemorun.lower import MAX_PARALLEL_SINGLE, Site
from nemorun.packaging import Packages
from nemorun.plan import default_site, plan, plan_config
from nemorun.store import ExperimentRecord

MAX_PARALLEL_KEY = "hydra.launcher.max_parallel"


def _max_parallel(overrides: Sequence[str]) -> Optional[int]:
    if not any(MAX_PARALLEL_KEY in o for o in overrides):  # no parse (Hydra's parser imports all of Hydra) on a cache hit
        return None
    values = [o.value() for o in compose.parse_overrides(overrides) if str(o.key_or_group) == MAX_PARALLEL_KEY]
    return values[-1] if values else None


def _finish(outcome: Outcome) -> Outcome:
    raise_if_failed(outcome)
    return outcome


def launch(overrides: Sequence[str], *, multirun: Optional[bool] = None, out: TextIO = sys.stdout) -> Outcome:
    """Run like ``nemorun [-m] overrides...``: sweep syntax makes a sweep unless ``multirun=False``."""
    overrides = list(overrides)
    with compose.described():
        if multirun is None:
            multirun = compose.is_sweep(overrides)
    if not multirun:
        return launch_composed(compose_run(overrides), overrides, out=out)
    with compose.hydra_context() as loader, compose.described():
        composer = compose.FilesComposer(loader)
        the_plan = plan(compose.sweep_batch(overrides), composer, default_site(), command_overrides=overrides,
                        multirun=True, max_parallel=_max_parallel(overrides))
    return _finish(execute(the_plan, out))


def compose_run(overrides: Sequence[str]) -> DictConfig:
    """A single run's config (:func:`nemorun.compose.compose_single`), refused when it sets a
    sweep's launcher key."""
    with compose.described():
        if _max_parallel(overrides) is not None:  # Hydra's launcher key: only a sweep has a launcher
            raise ConfigError(f"hydra.launcher.{MAX_PARALLEL_SINGLE}")
    return compose.compose_single(overrides)


def launch_composed(cfg: DictConfig, overrides: Sequence[str], *, out: TextIO = sys.stdout,
                    site: Optional[Site] = None) -> Outcome:
    """A single run (or multi-task experiment) whose config is already composed."""
    the_plan = plan_config(cfg, site or default_site(), overrides)
    return _finish(execute(the_plan, out))


def rerun(record: ExperimentRecord, overrides: Sequence[str], *, fresh_code: bool = False,
          out: TextIO = sys.stdout) -> Outcome:
    """A new experiment from ``record``'s STORED config (``config.yaml``), its overrides, then
    ``overrides`` (later ones win). Values only: a group selection needs a new launch.

    The code is the code ``record`` ran (its recorded archives, checked by digest), not the
    working tree as it is now, unless ``fresh_code``."""
    meta = record.meta
    stored, multirun = list(meta.get("overrides", [])), bool(meta.get("multirun"))
    combined = [*stored, *overrides]
    with record.config_folders(), compose.hydra_context() as loader, compose.described():
        if not multirun and compose.is_sweep(overrides):
            raise ConfigError(f"experiment {record.id} is a single run: a rerun takes plain values, not sweeps")
        if not multirun and _max_parallel(overrides) is not None:
            raise ConfigError(f"hydra.launcher.{MAX_PARALLEL_SINGLE}")
        first_stored = compose.sweep_batch(stored)[0] if multirun else stored
        composer = compose.SnapshotComposer(compose.snapshot(record.path / "config.yaml"), first_stored, loader)
        batch = compose.sweep_batch(combined) if multirun else [combined]
        site = default_site()
        packages = Packages(site, code_from=None if fresh_code else record.path)
        the_plan = plan(batch, composer, site, command_overrides=combined, multirun=multirun, packages=packages,
                        max_parallel=_max_parallel(combined) if multirun else None)
    return _finish(execute(the_plan, out))


def resume(record: ExperimentRecord, *, out: TextIO = sys.stdout) -> Outcome:
    """Submit the jobs of ``record`` that are not on the backend yet; nothing else.

    The jobs are planned again from the config files with the record's id and submit directory,
    reusing its recorded code archives, and must render exactly as recorded.
    """
    meta = record.meta
    site = Site(experiment_id=meta["id"], submit_dir=meta["submit_dir"], home=str(record.path.parent.parent.parent),
                python=sys.executable)
    packages = Packages(site, record_dir=record.path)
    overrides = list(meta.get("overrides", []))
    multirun = bool(meta.get("multirun"))
    # a sweep's lanes (hydra.launcher.max_parallel) are planned again, or its jobs would all start at once
    parallel = _max_parallel(overrides) if multirun else None
    if meta.get("arrays"):
        [array_name] = list(meta["arrays"])
        array = record.try_job(array_name)  # None: the launch died before recording the array
        parallel = array.array_parallelism if array is not None else parallel
    with record.config_folders(), compose.hydra_context() as loader, compose.described():
        composer = compose.FilesComposer(loader)
        batch = compose.sweep_batch(overrides) if multirun else [overrides]
        the_plan = plan(batch, composer, site, command_overrides=overrides, multirun=multirun, packages=packages,
                        max_parallel=parallel)
    return execute(the_plan, out, resume=record)


def record_path(outcome: Outcome) -> Optional[Path]:
    return outcome.record.path if outcome.record is not None else None
