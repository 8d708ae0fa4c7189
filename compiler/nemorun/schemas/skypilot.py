"""Schema of ``executor=skypilot``: a SkyPilot task (``task.yaml``) on a cluster or as a managed job.

Resources follow SkyPilot's own names (``sky/utils/schemas.py``, skypilot 0.14); ``infra`` is the
current form of ``cloud``/``region``/``zone`` (set one form, not both).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Optional

from nemorun.schemas.core import NAME, NODES, PER_NODE, ExecutorConfig, checked, count

# what sky.Resources accepts for cpus/memory: a number, or a number and "+" for "at least"
_AMOUNT = re.compile(r"^\d+(\.\d+)?\+?$")


@dataclass
class SkypilotExecutorConfig(ExecutorConfig):
    kind: str = "skypilot"
    # accelerator name (H100, A100-80GB, L4...); none: a CPU-only task
    gpus: Optional[str] = None
    # accelerators per node, with gpus
    gpus_per_node: int = checked(1, check=PER_NODE)
    num_nodes: int = checked(1, check=NODES)
    # vCPUs per node: "8" exactly or "8+" at least
    cpus: Optional[str] = None
    # memory per node in GB: "32" exactly or "32+" at least
    memory: Optional[str] = None
    # boot disk per node, GB
    disk_size: Optional[int] = None
    # where to run: k8s, aws, aws/us-east-1, gcp/us-central1/us-central1-a, k8s/<context>
    infra: Optional[str] = None
    # older form of infra
    cloud: Optional[str] = None
    region: Optional[str] = None
    zone: Optional[str] = None
    use_spot: bool = False
    # reuse (or name) this cluster; default: nemorun-<experiment>-<id tail>
    cluster_name: Optional[str] = checked(None, check=NAME)
    # shell commands run once when the cluster is provisioned
    setup: Optional[str] = None
    # docker image for the task (image_id: docker:<image>)
    container_image: Optional[str] = None
    # local directory SkyPilot syncs to the nodes and runs the task in (~/sky_workdir); with
    # packager=git/pattern/hybrid the unpacked archive is the workdir, so leave this unset
    workdir: Optional[str] = None
    # remote path -> local path or bucket URI (s3://, gs://...)
    file_mounts: Dict[str, str] = field(default_factory=dict)
    # stop the cluster after this many idle minutes (down=true: tear it down instead)
    idle_minutes_to_autostop: Optional[int] = checked(None, check=count(0))
    down: bool = False
    # run as a SkyPilot managed job (sky.jobs.launch: recovery, own controller) instead of on a cluster;
    # retries need it (resources.job_recovery.max_restarts_on_errors, applied by the jobs controller)
    managed: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        # the value checks sky.Resources makes in Python (its JSON schema does not), done here so
        # a dry run fails as the SDK would
        for name in ("cpus", "memory"):
            value = getattr(self, name)
            if value is not None and not _AMOUNT.match(str(value)):
                raise ValueError(f"{name} must be a number or '<number>+' (got {value!r})")
        if self.disk_size is not None and self.disk_size <= 0:
            raise ValueError(f"disk_size must be a positive number of GB (got {self.disk_size})")
        if self.infra and (self.cloud or self.region or self.zone):
            raise ValueError("set infra, or cloud/region/zone (its older form), not both")
        if self.managed and (self.cluster_name or self.idle_minutes_to_autostop is not None or self.down):
            raise ValueError("managed=true runs on a cluster of SkyPilot's choosing: cluster_name, idle_minutes_to_autostop and down do not apply")
        if self.retries > 0 and not self.managed:
            # only SkyPilot's jobs controller restarts a failed job; `sky launch` on a cluster runs it once
            raise ValueError(f"retries={self.retries} needs managed=true: only SkyPilot managed jobs restart on errors "
                             "(resources.job_recovery.max_restarts_on_errors)")


SCHEMAS: dict[str, type] = {"_schema_executor_skypilot": SkypilotExecutorConfig}
