"""Schema of the ``experiment`` group: several named tasks launched as ONE experiment."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class ExperimentTaskConfig:
    # Hydra overrides for this task, applied after the command line's (task=..., executor.nodes=2, ...)
    overrides: List[str] = field(default_factory=list)
    # names of the tasks (keys of ``tasks``) this one runs after
    depends_on: List[str] = field(default_factory=list)
    # afterok (all upstream succeeded), afterany (all ended), afternotok (one failed)
    dependency_type: str = "afterok"
    # tasks naming the same allocation run in ONE Slurm job, each as its own step: a job group
    # (same resources: one allocation) or a heterogeneous job (one component per task)
    allocation: Optional[str] = None


@dataclass
class ExperimentConfig:
    # experiment title (default: the option's name)
    name: Optional[str] = None
    # task name -> its overrides and dependencies; launched in dependency order
    tasks: Dict[str, ExperimentTaskConfig] = field(default_factory=dict)


SCHEMAS: dict[str, type] = {"_schema_experiment": ExperimentConfig}
