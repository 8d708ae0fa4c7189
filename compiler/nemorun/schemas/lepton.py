"""Schema of ``executor=lepton``: a DGX Cloud Lepton batch job (leptonai 0.47 SDK, ``/jobs`` API).

Workspace credentials are not part of the config: the SDK reads them from ``lep login`` or from
``LEPTON_WORKSPACE_ID`` / ``LEPTON_WORKSPACE_TOKEN`` / ``LEPTON_WORKSPACE_URL``. Secret environment
variables are references to Lepton workspace secrets: ``env_vars: {HF_TOKEN: {secret: hf-token}}``.
"""
from __future__ import annotations

import posixpath
import re
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
    # GPUs per replica; default: the resource shape's count (gpu.8xh100-80gb: 8, cpu.*: 0)
    gpus_per_node: Optional[int] = checked(None, check=GPUS)
    mounts: List[LeptonMountConfig] = field(default_factory=list)
    # where packaged code is unpacked on mounted storage (<nemo_run_dir>/<experiment>/<id>/<job>/code);
    # must lie under one of mounts[].mount_path; unset: inside each replica's container
    nemo_run_dir: Optional[str] = checked(None, check=absolute_path)
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
        self._check_gpus()
        if self.nemo_run_dir is not None:
            _check_under_mount(str(self.nemo_run_dir), self.mounts)

    def _check_gpus(self) -> None:
        """The shape decides the hardware; ``gpus_per_node`` only sizes torchrun and ft_launcher, so
        a count the shape does not have would start processes for GPUs that are not there."""
        if self.resource_shape is MISSING or self.resource_shape == MISSING:
            return
        shape_gpus = gpus_of_shape(str(self.resource_shape))
        if self.gpus_per_node is None:
            if shape_gpus is None:
                raise ValueError(f"resource_shape {self.resource_shape!r} does not name its GPU count "
                                 "(gpu.<N>x<type> or cpu.<size>); set gpus_per_node")  # fmt: skip
            self.gpus_per_node = shape_gpus
        elif shape_gpus is not None and self.gpus_per_node != shape_gpus:
            raise ValueError(f"gpus_per_node={self.gpus_per_node} does not match resource_shape {self.resource_shape} "
                             f"({shape_gpus} GPUs per replica); set gpus_per_node={shape_gpus} or leave it unset")  # fmt: skip


# gpu.8xh100-80gb, gpu.2xa100-40gb: a count; gpu.a10, gpu.h100-sxm, gpu.a10.6xlarge: one GPU
_SHAPE_COUNT = re.compile(r"^gpu\.(\d+)x[a-z0-9]")


def gpus_of_shape(shape: str) -> Optional[int]:
    """GPUs per replica of a Lepton resource shape (leptonai's ``VALID_SHAPES`` spell them
    ``cpu.<size>``, ``gpu.<type>`` or ``gpu.<N>x<type>``); None when the name does not say."""
    shape = shape.strip().lower()
    if shape.startswith("cpu."):
        return 0
    m = _SHAPE_COUNT.match(shape)
    if m:
        return int(m.group(1))
    return 1 if shape.startswith("gpu.") and len(shape) > 4 else None


def _check_under_mount(path: str, mounts: List[LeptonMountConfig]) -> None:
    """``nemo_run_dir`` must be on writable mounted storage: elsewhere the code would land in one
    replica's container and be gone with it."""
    norm = posixpath.normpath(path)
    holding = [m for m in mounts
               if norm == posixpath.normpath(m.mount_path) or norm.startswith(posixpath.normpath(m.mount_path).rstrip("/") + "/")]
    # the deepest mount holding the path is the one the container sees there
    deepest = max(holding, key=lambda m: len(posixpath.normpath(m.mount_path)), default=None)
    if deepest is None:
        listed = ", ".join(str(m.mount_path) for m in mounts) or "none"
        raise ValueError(f"nemo_run_dir {path!r} is not under any of mounts[].mount_path ({listed}); mount the storage it is on")
    if deepest.read_only:
        raise ValueError(f"nemo_run_dir {path!r} is on the read-only mount {deepest.mount_path}; the job must write the code there")


SCHEMAS: dict[str, type] = {"_schema_executor_lepton": LeptonExecutorConfig}
