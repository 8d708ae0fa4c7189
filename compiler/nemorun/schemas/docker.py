"""Schema of ``executor=docker``: one detached container per job on a Docker engine (docker-py).

Field names follow docker-py's ``containers.run`` keywords where one exists, so ``container.json``
reads like the config that produced it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from omegaconf import MISSING

from nemorun.schemas.core import MAX_PER_NODE, PER_NODE, ExecutorConfig, absolute_path, checked, count, each, one_line


@dataclass
class DockerExecutorConfig(ExecutorConfig):
    kind: str = "docker"
    # image reference as the engine knows it; nemorun never pulls (a missing image is an error)
    container_image: str = MISSING
    # GPUs requested from the engine's device drivers: 0 = none, -1 = all, n = that many
    num_gpus: int = checked(0, check=count(-1, MAX_PER_NODE))
    # OCI runtime ("nvidia", "runc"); null = the engine's default
    runtime: Optional[str] = None
    # IPC namespace: "host", "shareable", "private", "container:<id>"; null = engine default
    ipc_mode: Optional[str] = None
    # size of /dev/shm, docker units ("16g", "512m"); null = engine default (64m)
    shm_size: Optional[str] = None
    # bind mounts, docker form "host_path:container_path[:ro|rw]"
    volumes: List[str] = checked(factory=list, check=each(one_line))
    # network mode: "none", "host", "bridge" or a network name; null = engine default
    network: Optional[str] = None
    # ulimits: name -> "soft[:hard]" as in docker run --ulimit (memlock: "-1", nofile: "1024:65536")
    ulimits: Dict[str, str] = field(default_factory=dict)
    # user[:group] inside the container; null = the image's user
    user: Optional[str] = None
    # working directory inside the container; null = /nemorun/code when code is shipped, else the image's
    working_dir: Optional[str] = checked(None, check=absolute_path)
    # extra container labels (nemorun adds its own nemorun.* labels)
    labels: Dict[str, str] = field(default_factory=dict)
    # shell for inline tasks, non-Python scripts and launcher commands that need expansion
    # ("bash"; "sh" for images without bash, such as busybox)
    shell: str = "bash"
    # interpreter for Python scripts and function tasks inside the container
    python: Optional[str] = None
    # processes per container for a launcher such as torchrun
    ntasks_per_node: int = checked(1, check=PER_NODE)
    # cancel: seconds between SIGTERM (docker stop) and SIGKILL
    cancel_grace_seconds: int = checked(10, check=count(0))


SCHEMAS: dict[str, type] = {"_schema_executor_docker": DockerExecutorConfig}
