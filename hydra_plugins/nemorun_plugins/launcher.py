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
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf

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
        import sys

        from nemorun import compose
        from nemorun.errors import ConfigError
        from nemorun.execute import execute, raise_if_failed
        from nemorun.plan import default_site, plan

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
        command = [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False) or []]
        composer = compose.SweepMasterComposer(config, loader, command)
        # Hydra keeps hydra.* overrides out of overrides.task: recorded, or --resume plans no lanes
        recorded = command if self.max_parallel is None else [*command, f"hydra.launcher.max_parallel={self.max_parallel}"]
        the_plan = plan(job_overrides, composer, default_site(), command_overrides=recorded,
                        multirun=True, max_parallel=self.max_parallel)
        outcome = execute(the_plan, sys.stdout)
        # sweep job i's name (a packed sweep, allocation=NAME, runs them as the steps of one job)
        names = the_plan.task_names() if outcome.record is not None else []
        returns = []
        for i, overrides in enumerate(job_overrides):
            ret = JobReturn(overrides=list(overrides), task_name="nemorun", status=JobStatus.COMPLETED)
            name = names[i] if names else None
            codes = outcome.exit_codes
            ret.return_value = codes.get(name, {"job": name, "submitted": bool(names)}) if name else None
            if name in codes and codes[name] != 0:
                ret.status, ret.return_value = JobStatus.FAILED, RuntimeError(f"job {name} exited {codes[name]}")
            returns.append(ret)
        if sweeper in GRID_SWEEPERS:
            # Hydra ends a multirun with status 0 whatever the jobs' returns say; a grid sweep that
            # waited must fail the command. (Adaptive sweepers get the failed trials instead.)
            raise_if_failed(outcome, shown=FAILED_SHOWN)
        return returns
