"""Schemas of ``executor=kubeflow`` (Kubeflow Trainer v2.2+ TrainJob) and ``packager=configmap``.

Both live here because the ConfigMap packager exists for this executor: its files are mounted
into the TrainJob's trainer container (``node``).
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING

from nemorun.schemas.core import GPUS, NODES, PER_NODE, ExecutorConfig, absolute_path, checked, dns_label, secret_env_vars


# docker's units, as ir.Resources.shm_size (and executor=docker's shm_size) spell sizes
SHM_SIZE = re.compile(r"^[1-9]\d*[bkmg]?$")


class RuntimeKind(str, enum.Enum):
    ClusterTrainingRuntime = "ClusterTrainingRuntime"
    TrainingRuntime = "TrainingRuntime"


@dataclass
class KubeflowExecutorConfig(ExecutorConfig):
    kind: str = "kubeflow"
    # values are strings, or {secret: <Secret name>, key: <key in it>} for a Kubernetes Secret
    # reference (secretKeyRef, resolved in the pod; the Secret must be in the TrainJob's namespace)
    env_vars: Dict[str, Any] = secret_env_vars("secret", "key")
    # Kubernetes namespace of the TrainJob (and of its ConfigMap)
    namespace: str = checked("default", check=dns_label)
    # (Cluster)TrainingRuntime the TrainJob is built from (must exist on the cluster)
    runtime_name: str = "torch-distributed"
    runtime_kind: RuntimeKind = RuntimeKind.ClusterTrainingRuntime
    # training nodes (pods) and processes per node (numNodes, numProcPerNode)
    nodes: int = checked(1, check=NODES)
    ntasks_per_node: int = checked(1, check=PER_NODE)
    # container image of the trainer
    image: str = MISSING
    # per-node resource requests/limits as Kubernetes quantities ("8", "500m", "64Gi")
    cpu_request: Optional[str] = None
    cpu_limit: Optional[str] = None
    memory_request: Optional[str] = None
    memory_limit: Optional[str] = None
    # GPUs per node (requests = limits), as the extended resource below
    gpus: int = checked(0, check=GPUS)
    gpu_resource: str = "nvidia.com/gpu"
    # core/v1 Volume objects added to the trainer pods, and VolumeMounts for the `node` container
    volumes: List[Dict[str, Any]] = field(default_factory=list)
    volume_mounts: List[Dict[str, Any]] = field(default_factory=list)
    # core/v1 Toleration objects, node selector labels, and an Affinity object for the trainer pods
    tolerations: List[Dict[str, Any]] = field(default_factory=list)
    node_selector: Dict[str, str] = field(default_factory=dict)
    affinity: Dict[str, Any] = field(default_factory=dict)
    # where packaged code (any packager: its files go into a ConfigMap) is mounted in the container;
    # the job's working directory
    code_dir: str = checked("/nemorun/code", check=absolute_path)
    # interpreter for Python scripts and function tasks inside the image
    python: str = "python"
    # size of the memory-backed /dev/shm of pods with GPUs, docker units ("64g", "512m"); null:
    # no limit but the pod's memory (like DGX Cloud's large /dev/shm). Set, it applies to every pod.
    shm_size: Optional[str] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shm_size is not None and not SHM_SIZE.match(str(self.shm_size).lower()):
            raise ValueError(f"shm_size must be <number>[b|k|m|g] like '64g' (got {self.shm_size!r})")


@dataclass
class ConfigMapPackagerConfig:
    """Ship the matching files in a ConfigMap mounted at ``executor.code_dir`` (Kubernetes only;
    at most 1 MiB in total). File paths relative to ``base_path`` are kept in the mount."""

    kind: str = "configmap"
    # glob pattern, or a list of them, searched recursively ("*.py", ["*.py", "*.yaml"])
    include_pattern: Any = "*.py"
    # folder (or list, one per pattern) under base_path where each pattern is searched
    relative_path: Any = "."
    # namespace of the ConfigMap; default: the executor's (it must be the TrainJob's)
    namespace: Optional[str] = None
    # ConfigMap name = <configmap_prefix>-<TrainJob name>
    configmap_prefix: str = "nemorun-code"
    # local folder the files are taken from; default: the directory nemorun is started from
    base_path: Optional[str] = None


SCHEMAS: dict[str, type] = {
    "_schema_executor_kubeflow": KubeflowExecutorConfig,
    "_schema_packager_configmap": ConfigMapPackagerConfig,
}
