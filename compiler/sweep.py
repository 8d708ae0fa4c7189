"""Plan a whole sweep (or any list of jobs) as ONE experiment, at milliseconds per job.

Why not one Hydra compose per job: a compose costs ~50 ms, so a 10,000-job sweep would spend
minutes before submitting anything. Jobs of a sweep that differ only in VALUES are composed
once per distinct set of group selections (``executor=local,slurm`` = two composes) and the
rest are patched:

- every varying key under ``task.params`` and no interpolation in the config: the first job's
  IR is copied with new params (the function signature is re-checked per job);
- other value changes: the override is applied to the composed config in place (Hydra's own
  merge, so types are still enforced) and the job is compiled again; the config-wide checks
  (unknown keys, ``???``) are skipped because a primitive value cannot change them.

Values are parsed once per sweep override (``range(0,10000)`` is parsed once, not 10,000 times).
Every job is compiled, rendered and validated before anything is submitted; shell scripts are
syntax-checked in one batch (:func:`nemorun.validate.batched_shell_checks`).
"""
from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TextIO

from omegaconf import DictConfig, OmegaConf

from nemorun import compile as compiler
from nemorun import ir
from nemorun.errors import ConfigError
from nemorun.pipeline import PlannedJob, render_job
from nemorun.validate import batched_shell_checks

Compose = Callable[[list[str]], DictConfig]
# decides whether ``key`` (an override's key) selects a config group option
IsGroup = Callable[[str], bool]


@dataclass(frozen=True)
class SweepJob:
    index: int
    name: str
    overrides: tuple[str, ...]
    planned: PlannedJob


def parse_overrides(strings: Sequence[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return list(OverridesParser.create().parse_overrides(list(strings)))


class ValueTable:
    """override string -> parsed Override, filled from the sweep's own overrides in one parse."""

    def __init__(self, command_overrides: Sequence[str]):
        self._by_string: dict[str, Any] = {}
        try:
            parsed = parse_overrides(command_overrides)
        except Exception:  # noqa: BLE001 - a bad line is reported by the per-job parse below
            parsed = []
        from hydra.core.override_parser.types import Override, ValueType

        for ov in parsed:
            key = ov.get_key_element()
            if ov.is_sweep_override() and ov.is_discrete_sweep():
                for text, value in zip(ov.sweep_string_iterator(), ov.sweep_iterator()):
                    self._by_string[f"{key}={text}"] = Override(
                        type=ov.type, key_or_group=ov.key_or_group, value_type=ValueType.ELEMENT,
                        _value=value, package=ov.package, input_line=f"{key}={text}",
                    )
            elif not ov.is_sweep_override():
                self._by_string[f"{key}={ov.get_value_element_as_str()}"] = ov

    def get(self, text: str) -> Any:
        ov = self._by_string.get(text)
        if ov is None:
            ov = self._by_string[text] = parse_overrides([text])[0]
        return ov


def is_value_override(ov: Any, is_group: IsGroup) -> bool:
    from hydra.core.override_parser.types import OverrideType

    key = str(ov.key_or_group)
    return (
        ov.type is OverrideType.CHANGE
        and ov.package is None
        and not key.startswith("hydra.")
        and "/" not in key
        and not is_group(key)
    )


def apply_overrides(overrides: Sequence[Any], cfg: DictConfig) -> None:
    """Hydra's own merge of value overrides into a composed config (types still enforced)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(list(overrides), cfg)


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
        child = cfg._get_node(key)
        if OmegaConf.is_config(child) and not OmegaConf.is_missing(cfg, key) and _has_interpolation(child):
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


class _Group:
    """Jobs sharing one set of group selections: composed once, patched per job."""

    def __init__(self, cfg: DictConfig, first: ir.Job, first_values: Mapping[str, Any]):
        self.cfg = cfg
        self.first = first
        self.values = dict(first_values)
        self.ir_patchable = not _has_interpolation(cfg)


def plan_sweep(
    batch: Sequence[Sequence[str]],
    compose: Compose,
    site: compiler.Site,
    *,
    command_overrides: Sequence[str] = (),
    is_group: IsGroup = lambda key: False,
    on_job: Optional[Callable[[int], None]] = None,
) -> Iterator[SweepJob]:
    """Yield every job of the sweep compiled, rendered and validated (scripts: at the end).

    A generator so a dry run can stream jobs without holding them; a launch must exhaust it
    (the batched script check raises at the end) before submitting anything.
    """
    table = ValueTable(command_overrides)
    groups: dict[tuple[str, ...], _Group] = {}
    names: Optional[list[str]] = None
    with batched_shell_checks() as label:
        for index, job_overrides in enumerate(batch):
            parsed = [table.get(o) for o in job_overrides]
            selection = tuple(o for o, p in zip(job_overrides, parsed) if not is_value_override(p, is_group))
            values = {str(p.key_or_group): p for p in parsed if is_value_override(p, is_group)}
            group = groups.get(selection)
            if names is None or group is None:
                cfg = compose(list(job_overrides))
                compiler.check_config(cfg)
                if names is None:
                    names = job_names(compiler._task_from(cfg).name, len(batch))
                label(f"job {names[index]}")
                job = compiler.compile_job(cfg, site, job_name=names[index])
                groups[selection] = _Group(cfg, job, {k: p.value() for k, p in values.items()})
            else:
                label(f"job {names[index]}")
                job = _patched(group, values, site, names[index])
            planned = PlannedJob(job, render_job(job))
            yield SweepJob(index, names[index], tuple(job_overrides), planned)
            if on_job is not None:
                on_job(index)


def _patched(group: _Group, values: Mapping[str, Any], site: compiler.Site, name: str) -> ir.Job:
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
            compiler.check_function_call(str(task.target), params, group.first.workdir)
        return dataclasses.replace(group.first, name=name, job_dir=job_dir, task=task)
    try:
        apply_overrides(list(values.values()), group.cfg)
    except Exception as exc:
        raise ConfigError(f"job {name}: {_first_line(exc)}") from exc
    if not all(_primitive(p.value()) for p in values.values()):
        compiler.check_config(group.cfg)
    return compiler.compile_job(group.cfg, site, job_name=name)


def _first_line(exc: BaseException) -> str:
    cause = exc.__cause__
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if cause is not None and str(cause):
        text += f": {str(cause).splitlines()[0]}"
    return text


_MISSING = object()


# A dry run prints at most this many job lines in its summary, then the first job's artifacts.
SUMMARY_LINES = 20


@dataclass
class SweepResult:
    experiment_id: str
    name: str
    jobs: list[str]
    record_path: Optional[str] = None


def _varying(batch: Sequence[Sequence[str]]) -> list[int]:
    """Positions of the overrides that differ between jobs (what a summary line shows)."""
    if not batch:
        return []
    first = batch[0]
    return [i for i in range(len(first)) if any(len(j) != len(first) or j[i] != first[i] for j in batch[1:])]


def config_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"]))


def run_sweep(
    batch: Sequence[Sequence[str]],
    compose: Compose,
    site: compiler.Site,
    *,
    command_overrides: Sequence[str],
    is_group: IsGroup,
    dryrun: bool,
    render_dir: Optional[str],
    out: TextIO,
) -> SweepResult:
    """The whole sweep as ONE experiment: plan every job, then (unless a dry run) record and submit."""
    from nemorun.experiment import Entry, create_record, submit_entries, write_render_dir
    from nemorun.pipeline import format_dryrun

    first_cfg: list[DictConfig] = []

    def composing(overrides: list[str]) -> DictConfig:
        cfg = compose(overrides)
        if not first_cfg:
            first_cfg.append(cfg)
        return cfg

    jobs = plan_sweep(batch, composing, site, command_overrides=command_overrides, is_group=is_group)
    varying = _varying(batch)
    count = len(batch)
    if dryrun:
        summary: list[str] = []
        first: Optional[SweepJob] = None
        for sj in jobs:
            first = first or sj
            if render_dir:
                write_render_dir([sj.planned], render_dir, single=count == 1)
            if sj.index < SUMMARY_LINES:
                summary.append(f"#   {sj.name}: {' '.join(sj.overrides[i] for i in varying) or '(no varying override)'}\n")
        assert first is not None
        out.write(f"# dry run: sweep of {count} jobs, experiment {first.planned.job.experiment_name} "
                  f"({first.planned.rendered.target}); every job rendered and validated, nothing submitted\n")
        out.write("".join(summary))
        if count > SUMMARY_LINES:
            out.write(f"#   ... and {count - SUMMARY_LINES} more\n")
        where = f"all {count} jobs written to {render_dir}/<job>/" if render_dir else f"all {count}: add render_dir=DIR"
        out.write(f"# artifacts of the first job ({where}):\n")
        out.write(format_dryrun([first.planned]))
        return SweepResult(site.experiment_id, first.planned.job.experiment_name, [])

    entries = [Entry(sj.planned, sj.overrides) for sj in jobs]  # raises before anything is written
    head = entries[0].planned
    if render_dir:
        write_render_dir((e.planned for e in entries), render_dir, single=count == 1)
    record = create_record(
        home=site.home, name=head.job.experiment_name, experiment_id=site.experiment_id, target=head.rendered.target,
        config_yaml=config_yaml(first_cfg[0]), overrides=command_overrides, submit_dir=site.submit_dir,
        entries=entries, kind="sweep", multirun=True,
    )
    out.write(f"experiment {head.job.experiment_name}/{site.experiment_id} ({head.rendered.target}): "
              f"{count} jobs in {record.path}\n")
    out.flush()
    submit_entries(record, entries, out, quiet=count > SUMMARY_LINES)
    if count > SUMMARY_LINES:
        out.write(f"  submitted {count} jobs; see: nemorun exp status {site.experiment_id}\n")
    return SweepResult(site.experiment_id, head.job.experiment_name, [e.name for e in entries], str(record.path))
