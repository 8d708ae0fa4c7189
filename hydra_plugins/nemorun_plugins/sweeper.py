"""``hydra/sweeper=nemorun``: Hydra's basic grid sweeper minus two costs nemorun does not need.

- No duplicate validation pass: ``BasicSweeper`` composes every job once to validate it and the
  launcher composes it again (200 jobs: 24 s -> 14 s). nemorun's launcher composes and validates
  every job before submitting any, so nothing is lost.
- No ``multirun.yaml`` in ``hydra.sweep.dir`` (a folder in the current directory): the experiment
  record keeps the config and the overrides.

The whole grid is ONE batch, so the launcher sees the whole sweep and makes it one experiment.
Imported by Hydra's plugin scan at every start-up: Hydra and dataclasses only.
"""
# No `from __future__ import annotations`: Hydra's plugin scan executes this module without a
# sys.modules entry, and dataclasses must then see real annotations, not strings.
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser


@dataclass
class NemorunSweeperConf:
    _target_: str = "hydra_plugins.nemorun_plugins.sweeper.NemorunSweeper"
    # extra sweep parameters, as BasicSweeper's ``params`` (key -> "v1,v2")
    params: Optional[Dict[str, str]] = None
    # a sweep making more jobs than this is refused before it is expanded (memory stays flat)
    max_jobs: int = 100_000


ConfigStore.instance().store(group="hydra/sweeper", name="nemorun", node=NemorunSweeperConf, provider="nemorun")


class NemorunSweeper(BasicSweeper):
    def __init__(self, params: Optional[Dict[str, str]] = None, max_jobs: int = 100_000) -> None:
        super().__init__(max_batch_size=None, params=params)
        self.max_jobs = max_jobs

    def validate_batch_is_legal(self, batch: Any) -> None:
        """The nemorun launcher validates every job (and more) before submitting any."""

    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        from nemorun.compose import check_sweep_size, split_sweep

        check_sweep_size(overrides, self.max_jobs)
        self.overrides = [split_sweep(overrides)]  # values as typed (1.10 stays 1.10)
        batch = self.get_job_batch()
        return [self.launcher.launch(batch, initial_job_idx=0)]
