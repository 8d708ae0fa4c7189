"""Schemas of ``launcher=torchrun`` and ``launcher=ft`` (field names follow NeMo-Run's launchers).

Node count comes from the executor; ``nproc_per_node`` defaults to the executor's GPUs per node,
else its tasks per node. Rendezvous facts (head host, node rank) are filled in per backend by
``nemorun.launchers``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from nemorun.schemas.core import PER_NODE, PORT, Checked, checked, count, one_line, positive_number


@dataclass
class TorchrunLauncherConfig(Checked):
    """``torchrun`` (torch.distributed.run) on every node."""

    kind: str = "torchrun"
    # worker processes per node; default: the executor's GPUs per node, else its tasks per node
    nproc_per_node: Optional[int] = checked(None, check=PER_NODE)
    # rendezvous backend of multi-node forms (c10d: a TCPStore on the head node)
    rdzv_backend: str = "c10d"
    # TCP port of the rendezvous store on the head node
    rdzv_port: int = checked(29500, check=PORT)
    # rendezvous id; default: the Slurm job id on Slurm, else experiment id + job name
    rdzv_id: Optional[str] = checked(None, check=one_line)
    # worker-group restarts before the job fails (count)
    max_restarts: Optional[int] = checked(None, check=count(0))
    # seconds between worker health checks
    monitor_interval: Optional[float] = checked(None, check=positive_number)
    # base directory of per-rank log files on the node
    log_dir: Optional[str] = checked(None, check=one_line)
    # further launcher options, checked against the launcher's real option list
    extra_args: List[str] = field(default_factory=list)


@dataclass
class FtLauncherConfig(TorchrunLauncherConfig):
    """NVIDIA's fault-tolerant launcher (``ft_launcher``, nvidia-resiliency-ext >= 0.5 spelling)."""

    kind: str = "ft"
    # path of a fault-tolerance YAML config on the node (--ft-cfg-path)
    cfg_path: Optional[str] = None
    # seconds between workload checks
    workload_check_interval: Optional[float] = None
    # seconds to wait for a rank's first heartbeat
    initial_rank_heartbeat_timeout: Optional[float] = None
    # seconds between heartbeats before a rank counts as hung
    rank_heartbeat_timeout: Optional[float] = None
    # signal sent to hung ranks (e.g. SIGKILL)
    rank_termination_signal: Optional[str] = None
    # log level of the fault-tolerance machinery (DEBUG, INFO, ...)
    log_level: Optional[str] = None


SCHEMAS: dict[str, type] = {
    "_schema_launcher_torchrun": TorchrunLauncherConfig,
    "_schema_launcher_ft": FtLauncherConfig,
}
