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

Job arrays. When the sweep's jobs differ only in values (:func:`array_job`) and the target module
sets ``SUPPORTS_ARRAYS = True``, the sweep is submitted as ONE ``ir.Job`` with ``array_tasks``
(task i = sweep job i, in order) and ``array_parallelism`` (``hydra.launcher.max_parallel``).
The contract for such a target (Slurm):

- ``render``: one ``sbatch.sh`` with ``--array=0-<n-1>[%<array_parallelism>]``; per-task logs
  ``<remote job dir>/stdout-%a.log`` / ``stderr-%a.log``; the command chosen by
  ``$SLURM_ARRAY_TASK_ID``: the step runs ``<remote>/function-$SLURM_ARRAY_TASK_ID.yaml``;
  artifacts ``sbatch.sh`` plus ``function-<i>.yaml`` per array task (``function_spec_text``);
- its submitter: ``array_task_handle(handle, index) -> Handle`` naming task ``index``
  (``<job id>_<index>`` and that task's log paths), so ``status``/``logs``/``cancel`` work per
  task (``squeue -r`` lists pending tasks one per line).
"""
from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TextIO

from omegaconf import DictConfig, OmegaConf

from nemorun import lower
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
    site: lower.Site,
    *,
    command_overrides: Sequence[str] = (),
    is_group: IsGroup = lambda key: False,
    on_job: Optional[Callable[[int], None]] = None,
    package: Optional[Callable[[DictConfig], ir.Package]] = None,
) -> Iterator[SweepJob]:
    """Yield every job of the sweep compiled, rendered and validated (scripts: at the end).

    A generator so a dry run can stream jobs without holding them; a launch must exhaust it
    (the batched script check raises at the end) before submitting anything.
    """
    table = ValueTable(command_overrides)
    groups: dict[tuple[str, ...], _Group] = {}
    names: Optional[list[str]] = None
    experiment: Optional[str] = None
    with batched_shell_checks() as label:
        for index, job_overrides in enumerate(batch):
            parsed = [table.get(o) for o in job_overrides]
            # a packager value (packager.subpath=a,b) changes the code: its own group, its own archive
            selection = tuple(o for o, p in zip(job_overrides, parsed) if not is_value_override(p, is_group) or _packager_key(p))
            values = {str(p.key_or_group): p for p in parsed if is_value_override(p, is_group)}
            group = groups.get(selection)
            if names is None or group is None:
                cfg = compose(list(job_overrides))
                lower.check_config(cfg)
                if names is None:
                    names = job_names(lower._task_from(cfg).name, len(batch))
                    experiment = lower.experiment_name(cfg)
                cfg.name = experiment  # every job of the sweep lives in the one experiment
                label(f"job {names[index]}")
                staged = package(cfg) if package is not None else ir.Package()
                job = lower.compile_job(cfg, site, job_name=names[index], package=staged)
                groups[selection] = _Group(cfg, job, {k: p.value() for k, p in values.items()})
            else:
                label(f"job {names[index]}")
                job = _patched(group, values, site, names[index])
            planned = PlannedJob(job, render_job(job))
            yield SweepJob(index, names[index], tuple(job_overrides), planned)
            if on_job is not None:
                on_job(index)


def _packager_key(ov: Any) -> bool:
    return str(ov.key_or_group).split(".", 1)[0] == "packager"


def _patched(group: _Group, values: Mapping[str, Any], site: lower.Site, name: str) -> ir.Job:
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
            lower.check_function_call(str(task.target), params, group.first.workdir)
        return dataclasses.replace(group.first, name=name, job_dir=job_dir, task=task)
    try:
        apply_overrides(list(values.values()), group.cfg)
    except Exception as exc:
        raise ConfigError(f"job {name}: {_first_line(exc)}") from exc
    if not all(_primitive(p.value()) for p in values.values()):
        lower.check_config(group.cfg)
    return lower.compile_job(group.cfg, site, job_name=name, package=group.first.package)


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


def supports_arrays(target: str) -> bool:
    """A target renders ``ir.Job.array_tasks`` (and its submitter has ``array_task_handle``)."""
    from nemorun.targets import target_module

    return bool(getattr(target_module(target), "SUPPORTS_ARRAYS", False))


def array_job(jobs: Sequence[ir.Job], parallelism: Optional[int] = None) -> Optional[ir.Job]:
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


def plan_array(entries: Sequence[Any], max_parallel: Optional[int] = None) -> Optional[PlannedJob]:
    """The array job of a sweep's entries, rendered and validated, when its target has arrays."""
    if not entries or not supports_arrays(entries[0].planned.rendered.target):
        return None
    job = array_job([e.planned.job for e in entries], max_parallel)
    return PlannedJob(job, render_job(job)) if job is not None else None


def config_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [str(k) for k in cfg.keys() if k != "hydra"]))


def run_sweep(
    batch: Sequence[Sequence[str]],
    compose: Compose,
    site: lower.Site,
    *,
    command_overrides: Sequence[str],
    is_group: IsGroup,
    dryrun: bool,
    render_dir: Optional[str],
    out: TextIO,
    max_parallel: Optional[int] = None,
) -> SweepResult:
    """The whole sweep as ONE experiment: plan every job, then (unless a dry run) record and submit.

    On targets that support job arrays, jobs that differ only in values become ONE array job
    (at most ``max_parallel`` tasks at once); its artifacts are what a dry run shows.
    """
    from nemorun.experiment import Entry, create_record, submit_array, submit_entries, write_render_dir
    from nemorun.pipeline import format_dryrun

    from nemorun import packaging

    # the first job's config as composed: planning later patches that object in place per job
    first_yaml: list[str] = []
    packages = packaging.Packages(site)

    def composing(overrides: list[str]) -> DictConfig:
        cfg = compose(overrides)
        if not first_yaml:
            first_yaml.append(config_yaml(cfg))
        return cfg

    jobs = plan_sweep(batch, composing, site, command_overrides=command_overrides, is_group=is_group, package=packages.package)
    varying = _varying(batch)
    count = len(batch)
    if dryrun:
        summary: list[str] = []
        first: Optional[SweepJob] = None
        ir_jobs: list[ir.Job] = []
        for sj in jobs:
            first = first or sj
            if supports_arrays(first.planned.rendered.target):
                ir_jobs.append(sj.planned.job)
            if render_dir:
                write_render_dir([sj.planned], render_dir, single=count == 1)
            if sj.index < SUMMARY_LINES:
                summary.append(f"#   {sj.name}: {' '.join(sj.overrides[i] for i in varying) or '(no varying override)'}\n")
        assert first is not None
        array = array_job(ir_jobs, max_parallel)
        if array is not None:
            full = PlannedJob(array, render_job(array))
            if render_dir:
                write_render_dir([full], render_dir, single=False)
            # the script and the first task's files; the other tasks' go to render_dir
            shown_names = list(full.rendered.artifacts)[:2]
            shown = PlannedJob(array, dataclasses.replace(
                full.rendered, artifacts={n: full.rendered.artifacts[n] for n in shown_names}))
            out.write(f"# dry run: sweep of {count} jobs as ONE job array ({array.name}), experiment {array.experiment_name} "
                      f"({shown.rendered.target}); every job rendered and validated, nothing submitted\n")
            out.write("".join(summary))
            if count > SUMMARY_LINES:
                out.write(f"#   ... and {count - SUMMARY_LINES} more\n")
            out.write(format_dryrun([shown]))
            hidden = len(full.rendered.artifacts) - len(shown_names)
            if hidden:
                where = f"written to {render_dir}/{array.name}/" if render_dir else "add render_dir=DIR to write them"
                out.write(f"# ... and {hidden} more artifacts of this array ({where})\n")
            return SweepResult(site.experiment_id, array.experiment_name, [])
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
    array = plan_array(entries, max_parallel)
    if render_dir:
        write_render_dir([array] if array else (e.planned for e in entries), render_dir, single=count == 1)
    record = create_record(
        home=site.home, name=head.job.experiment_name, experiment_id=site.experiment_id, target=head.rendered.target,
        config_yaml=first_yaml[0], overrides=command_overrides, submit_dir=site.submit_dir,
        entries=entries, kind="sweep", multirun=True, array=array, packages=packages,
    )
    out.write(f"experiment {head.job.experiment_name}/{site.experiment_id} ({head.rendered.target}): "
              f"{count} jobs in {record.path}\n")
    out.flush()
    if array is not None:
        submit_array(record, array, out)
    else:
        submit_entries(record, entries, out, quiet=count > SUMMARY_LINES)
    if count > SUMMARY_LINES:
        out.write(f"  submitted {count} jobs; see: nemorun exp status {site.experiment_id}\n")
    return SweepResult(site.experiment_id, head.job.experiment_name, [e.name for e in entries], str(record.path))
