"""Schema of ``executor=lepton``: a DGX Cloud Lepton batch job (leptonai 0.47 SDK, ``/jobs`` API).

Workspace credentials are not part of the config: the SDK reads them from ``lep login`` or from
``LEPTON_WORKSPACE_ID`` / ``LEPTON_WORKSPACE_TOKEN`` / ``LEPTON_WORKSPACE_URL``. Secret environment
variables are references to Lepton workspace secrets: ``env_vars: {HF_TOKEN: {secret: hf-token}}``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional

from omegaconf import MISSING

from nemorun.schemas.core import GPUS, NODES, Checked, ExecutorConfig, absolute_path, checked, count, secret_env_vars

# Lepton's queue priority classes (leptonai/cli/util.py::_validate_queue_priority, canonical forms)
PRIORITY_CLASSES = tuple(f"{band}-{n}000" for band, ns in (("low", "123"), ("mid", "456"), ("high", "789")) for n in ns)


@dataclass
class LeptonMountConfig(Checked):
    """A path of a node group's storage mounted into every replica."""

    _path: ClassVar[str] = "mounts[]."
    # absolute path inside the container (not a system path such as /usr)
    mount_path: str = checked(check=absolute_path)
    # path within the storage volume
    path: str = "/"
    # storage volume (Lepton's "from"): node-nfs:<volume> or local:<path>
    source: str = "node-nfs:lepton-shared-fs"
    read_only: bool = False


@dataclass
class LeptonExecutorConfig(ExecutorConfig):
    kind: str = "lepton"
    # values are strings, or {secret: <workspace secret name>} for a secret reference
    env_vars: Dict[str, Any] = secret_env_vars("secret")
    # Lepton resource shape per replica, e.g. gpu.8xh100-80gb, cpu.small
    resource_shape: str = MISSING
    # dedicated node group name (or id); its id is looked up at submission
    node_group: Optional[str] = None
    # set to skip the lookup (then the dry run shows the real id)
    node_group_id: Optional[str] = None
    container_image: str = MISSING
    # replicas (one per node)
    nodes: int = checked(1, check=NODES)
    # GPUs per replica (the resource shape decides the hardware; this sizes torchrun)
    gpus_per_node: int = checked(0, check=GPUS)
    mounts: List[LeptonMountConfig] = field(default_factory=list)
    # /dev/shm per replica, MiB
    shared_memory_size: Optional[int] = checked(65536, check=count(0))
    # node reservation id to run in
    node_reservation: Optional[str] = None
    # shell commands run in the container before the task
    pre_launch_commands: List[str] = field(default_factory=list)
    # names of workspace image pull secrets
    image_pull_secrets: List[str] = field(default_factory=list)
    # queue priority class: low-1000 ... high-9000 (needs a node group with quota)
    priority: Optional[str] = None
    # seconds Lepton keeps a finished job before archiving it
    ttl_seconds_after_finished: int = checked(600, check=count(0))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.priority is not None and self.priority not in PRIORITY_CLASSES:
            raise ValueError(f"priority {self.priority!r} is not a Lepton priority class; use one of {', '.join(PRIORITY_CLASSES)}")


SCHEMAS: dict[str, type] = {"_schema_executor_lepton": LeptonExecutorConfig}
