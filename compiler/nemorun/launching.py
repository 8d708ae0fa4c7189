"""Launch from a list of overrides without the Hydra CLI (the Python API, ``exp rerun``), and
``--resume``: complete an experiment whose launch died half-way.

Composition goes through Hydra's compose API on the same config module, plugins and user
config folders as the CLI, so ``nemorun.launch([...])`` and ``nemorun ...`` build the same jobs.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, TextIO

from omegaconf import DictConfig, OmegaConf, open_dict

from nemorun import lower
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


def compose_config(overrides: Sequence[str]) -> DictConfig:
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
                result = launch_config(compose_config(overrides), list(overrides), out=out)
                return result.record.path if result.record else None
            batch = _sweep_batch(overrides)
            first = compose_config(batch[0])
            sweep = run_sweep(
                batch, compose_config, default_site(), command_overrides=list(overrides), is_group=_is_group(loader),
                dryrun=bool(first.dryrun), render_dir=first.get("render_dir"), out=out,
            )
            return Path(sweep.record_path) if sweep.record_path else None
    except NemorunError:
        raise
    except Exception as exc:  # Hydra/OmegaConf composition errors: the same one line as the CLI
        code, message = describe_error(exc)
        raise (ConfigError(message) if code == 2 else NemorunError(message)) from exc


# -- rerun from the stored config ------------------------------------------------------------
#
# ``exp rerun ID [overrides]`` starts from the experiment's config.yaml (the composed config as
# launched), not from the config files: a file edited after the first run must not change the
# rerun. config.yaml is typed again with the schema of each group option (picked by the node's
# ``kind``: an ``executor`` of kind slurm gets ``_schema_executor_slurm``), so overrides go through
# the CLI's own parser and Hydra's own merge: a typo or a bad type is still one line, exit 2.
# Every override line is applied to the snapshot again (stored ones re-set the values they set,
# and a sweep's jobs differ only in them). Config-group selections cannot apply to a snapshot:
# new ones are refused, and a sweep across group options (``task=a,b``) cannot rerun (its
# config.yaml holds one selection). Limit: a multi-task experiment's tasks are still composed
# from the files by nemorun.multitask (their override lists come from the snapshot).


def _typed(data: Any, path: str, schemas: dict[str, type]) -> Any:
    """A plain config tree (from config.yaml) with every group node typed by its schema again."""
    if not isinstance(data, dict):
        return data
    base = "_schema_" + path.replace(".", "_") if path else "_schema_root"
    kind = data.get("kind")
    schema = (schemas.get(f"{base}_{kind}") if isinstance(kind, str) else None) or schemas.get(base)
    children = {k: _typed(v, f"{path}.{k}" if path else str(k), schemas) for k, v in data.items()}
    if schema is None:
        return children
    node = OmegaConf.structured(schema)
    for key, value in children.items():
        if isinstance(value, DictConfig):
            with open_dict(node):
                node[key] = value  # an `Any` field keeps the child's own schema
        else:
            node.merge_with({key: value})
    return node


def snapshot(record: ExperimentRecord) -> DictConfig:
    """The experiment's stored config, typed and in struct mode as Hydra composes it."""
    from nemorun.schemas import all_schemas

    data = OmegaConf.to_container(OmegaConf.load(record.path / "config.yaml"), resolve=False)
    cfg: DictConfig = _typed(data, "", all_schemas())
    OmegaConf.set_struct(cfg, True)
    return cfg


def _is_selection(ov: Any, is_group: Any) -> bool:
    key = str(ov.key_or_group)
    return ov.package is not None or "/" in key or bool(is_group(key))


def _snapshotcompose_config(base: DictConfig, selection: frozenset[str], is_group: Any) -> Any:
    """``compose(overrides)`` against the snapshot instead of the config files."""
    import copy

    from hydra.core.override_parser.types import OverrideType

    from nemorun.sweep import apply_overrides, parse_overrides

    def compose(overrides: Sequence[str]) -> DictConfig:
        cfg = copy.deepcopy(base)
        apply: list[Any] = []
        for text, ov in zip(overrides, parse_overrides(overrides)):
            if str(ov.key_or_group).split(".", 1)[0] == "hydra":
                continue
            if _is_selection(ov, is_group):
                if text not in selection:
                    raise ConfigError(f"'{text}' selects a config group option: a rerun starts from the stored config "
                                      "and changes values only; launch anew to pick other options")
                continue
            if ov.is_delete() and OmegaConf.select(cfg, str(ov.key_or_group), throw_on_missing=False) is None:
                continue  # a stored ~key: already gone from the snapshot
            if ov.is_add():  # a stored +key: already in the snapshot, set it again
                ov = dataclasses.replace(ov, type=OverrideType.FORCE_ADD)
            apply.append(ov)
        apply_overrides(apply, cfg)
        return cfg

    return compose


def rerun(record: ExperimentRecord, overrides: Sequence[str], *, out: TextIO = sys.stdout) -> Optional[Path]:
    """A new experiment from ``record``'s stored config, its overrides and then ``overrides``."""
    from nemorun.cli import describe_error
    from nemorun.errors import NemorunError
    from nemorun.pipeline import default_site, launch_config
    from nemorun.sweep import parse_overrides, run_sweep

    meta = record.meta
    stored, multirun = list(meta.get("overrides", [])), bool(meta.get("multirun"))
    combined = [*stored, *overrides]
    try:
        with hydra_context() as loader:
            is_group = _is_group(loader)
            if not multirun and any(o.is_sweep_override() for o in parse_overrides(overrides)):
                raise ConfigError(f"experiment {record.id} is a single run: a rerun takes plain values, not sweeps")
            first_stored = _sweep_batch(stored)[0] if multirun else stored
            selection = frozenset(t for t, o in zip(first_stored, parse_overrides(first_stored)) if _is_selection(o, is_group))
            compose = _snapshotcompose_config(snapshot(record), selection, is_group)
            if not multirun:
                result = launch_config(compose(combined), combined, out=out)
                return result.record.path if result.record else None
            batch = _sweep_batch(combined)
            first = compose(batch[0])
            parallel = [o.value() for o in parse_overrides(combined) if str(o.key_or_group) == "hydra.launcher.max_parallel"]
            sweep = run_sweep(
                batch, compose, default_site(), command_overrides=combined, is_group=is_group,
                dryrun=bool(first.dryrun), render_dir=first.get("render_dir"), out=out,
                max_parallel=parallel[-1] if parallel else None,
            )
            return Path(sweep.record_path) if sweep.record_path else None
    except NemorunError:
        raise
    except Exception as exc:  # Hydra/OmegaConf errors: the same one line as the CLI
        code, message = describe_error(exc)
        raise (ConfigError(message) if code == 2 else NemorunError(message)) from exc


def plan_entries(meta: dict[str, Any], site: lower.Site, packages: Any = None) -> list[Any]:
    """The experiment's jobs planned again, as at launch (same id, same submit directory).

    ``packages`` (a :class:`nemorun.packaging.Packages`; resume passes one over the record, so
    the recorded archives are reused rather than packed again) ships the code on every path.
    """
    from nemorun.experiment import Entry, check_dependencies
    from nemorun.packaging import Packages
    from nemorun.pipeline import plan
    from nemorun.sweep import plan_sweep

    packages = packages or Packages(site)
    overrides = list(meta.get("overrides", []))
    with hydra_context() as loader:
        if meta.get("multirun"):
            return [Entry(j.planned, j.overrides) for j in plan_sweep(
                _sweep_batch(overrides), compose_config, site, command_overrides=overrides, is_group=_is_group(loader),
                package=packages.package)]
        cfg = compose_config(overrides)
        if cfg.get("experiment") is not None:
            from nemorun.multitask import plan_tasks

            return check_dependencies(plan_tasks(cfg, overrides, site, packages))
        return [Entry(p, tuple(overrides)) for p in plan(cfg, site, packages)]


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
    from nemorun.packaging import Packages

    meta = record.meta
    site = lower.Site(
        experiment_id=meta["id"], submit_dir=meta["submit_dir"], home=str(record.path.parent.parent.parent), python=sys.executable,
    )
    packages = Packages(site, record_dir=record.path)
    entries = plan_entries(meta, site, packages)
    if [e.name for e in entries] != list(meta["jobs"]):
        raise ConfigError(f"experiment {record.id} no longer plans the same jobs (config files changed?); use rerun without --resume")
    packages.commit(record.path)  # only an archive the record lacked (the launch died before writing it)
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
