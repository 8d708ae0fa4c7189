"""``hydra/launcher=nemorun``: a multirun sweep becomes ONE nemorun experiment.

Hydra hands the launcher the whole batch of job overrides; the launcher composes and validates
every job (composing once per distinct group selection and patching values, see
:mod:`nemorun.sweep`), records one experiment and submits it, then returns without waiting
(the jobs are reported COMPLETED once *submitted*).

That is sound with grid sweepers, which ignore return values. Adaptive sweepers (Optuna, Ax,
Nevergrad, ...) need each job's result before proposing the next: they are refused unless
``wait=true``, in which case the launcher waits for every job of the batch and reports each
job's exit code as its return value (a failed job is a failed trial). A grid sweep with
``wait=true`` whose jobs fail exits non-zero, naming the failed jobs in one line.

Imported by Hydra's plugin scan at every start-up, so nemorun itself is imported lazily.
"""
# No `from __future__ import annotations`: Hydra's plugin scan executes this module without a
# sys.modules entry, and dataclasses must then see real annotations, not strings.
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

# a waiting grid sweep whose jobs failed names at most this many of them in its error line
FAILED_SHOWN = 10
GRID_SWEEPERS = (
    "hydra_plugins.nemorun_plugins.sweeper.NemorunSweeper",
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
)


@dataclass
class NemorunLauncherConf:
    _target_: str = "hydra_plugins.nemorun_plugins.launcher.NemorunLauncher"
    # job arrays (Slurm): at most this many array tasks run at once (--array=0-N%max_parallel)
    max_parallel: Optional[int] = None


ConfigStore.instance().store(group="hydra/launcher", name="nemorun", node=NemorunLauncherConf, provider="nemorun")


class NemorunLauncher(Launcher):
    def __init__(self, max_parallel: Optional[int] = None) -> None:
        self.max_parallel = max_parallel
        self.config: Optional[DictConfig] = None
        self.hydra_context: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import copy
        import sys

        from nemorun.errors import ConfigError
        from nemorun.pipeline import default_site
        from nemorun.sweep import apply_overrides, is_value_override, parse_overrides, run_sweep

        assert self.config is not None
        config, loader = self.config, self.hydra_context.config_loader
        sweeper = str(config.hydra.sweeper.get("_target_", ""))
        wait = bool(config.get("wait", False))
        if sweeper not in GRID_SWEEPERS and not wait:
            raise ConfigError(
                f"sweeper {sweeper.rsplit('.', 1)[-1]} needs each job's result, but nemorun returns once jobs are "
                "submitted; add wait=true to block until every job of each batch ends, or use hydra/sweeper=nemorun"
            )
        if not job_overrides:
            return []

        @lru_cache(maxsize=None)
        def is_group(key: str) -> bool:
            return bool(loader.repository.group_exists(key.replace(".", "/")))

        command = [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False) or []]

        def compose(overrides: list[str]) -> DictConfig:
            """Hydra already composed the sweep's master config (every override but the swept
            ones): when the swept ones are plain values, copying it saves a whole compose."""
            swept = parse_overrides([o for o in overrides if o not in command])
            if all(is_value_override(o, is_group) for o in swept):
                cfg = _without_hydra(copy.deepcopy(config))
                apply_overrides(swept, cfg)
                return cfg
            return _without_hydra(loader.load_sweep_config(config, overrides))

        result = run_sweep(
            [list(j) for j in job_overrides],
            compose,
            default_site(),
            command_overrides=command,
            is_group=is_group,
            dryrun=bool(config.get("dryrun", False)),
            render_dir=config.get("render_dir"),
            out=sys.stdout,
            max_parallel=self.max_parallel,
        )
        codes = _wait_for(result) if wait and result.record_path else {}
        returns = []
        for i, overrides in enumerate(job_overrides):
            ret = JobReturn(overrides=list(overrides), task_name="nemorun", status=JobStatus.COMPLETED)
            name = result.jobs[i] if result.jobs else None
            ret.return_value = codes.get(name, {"job": name, "submitted": bool(result.jobs)}) if name else None
            if name in codes and codes[name] != 0:
                ret.status, ret.return_value = JobStatus.FAILED, RuntimeError(f"job {name} exited {codes[name]}")
            returns.append(ret)
        failed = [(n, c) for n, c in codes.items() if c != 0]
        if failed and sweeper in GRID_SWEEPERS:
            # Hydra ends a multirun with status 0 whatever the jobs' returns say; a grid sweep that
            # waited must fail the command. (Adaptive sweepers get the failed trials instead.)
            from nemorun.errors import NemorunError

            shown = ", ".join(f"{n} (exit {c})" for n, c in failed[:FAILED_SHOWN])
            more = f" and {len(failed) - FAILED_SHOWN} more" if len(failed) > FAILED_SHOWN else ""
            raise NemorunError(f"{len(failed)} of {len(codes)} jobs of experiment {result.experiment_id} failed: "
                               f"{shown}{more} (nemorun exp status {result.experiment_id})")
        return returns


def _without_hydra(cfg: DictConfig) -> DictConfig:
    """The job's config as the task function would see it (Hydra's run_job drops it too)."""
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _wait_for(result: Any) -> dict[str, int]:
    from pathlib import Path

    from nemorun.api import Experiment

    exp = Experiment(Path(result.record_path))
    states = exp.wait()
    return {name: (s.exit_code if s.exit_code is not None else (0 if s.state.value == "SUCCEEDED" else 1)) for name, s in states.items()}
