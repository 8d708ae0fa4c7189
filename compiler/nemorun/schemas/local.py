"""Schema of ``executor=local``: run on this machine, detached, logs in the experiment folder."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from nemorun.schemas.core import PER_NODE, ExecutorConfig, checked, one_line


@dataclass
class LocalExecutorConfig(ExecutorConfig):
    kind: str = "local"
    # processes on this machine for a launcher such as torchrun
    ntasks_per_node: int = checked(1, check=PER_NODE)
    # working directory of the job; default: the directory nemorun was started from
    # (or the unpacked code when a packager ships code)
    workdir: Optional[str] = checked(None, check=one_line)
    # interpreter for Python scripts and function tasks; default: the one running nemorun
    python: Optional[str] = checked(None, check=one_line)


SCHEMAS: dict[str, type] = {"_schema_executor_local": LocalExecutorConfig}
