"""Schema of ``executor=dgxcloud``: a workload on DGX Cloud through the Run:ai REST API (2.24).

The app secret is never a value in the config: ``app_secret`` must be an interpolation
(``${oc.env:DGX_APP_SECRET}``), or ``app_secret_env`` / ``app_secret_file`` names where it is.
``app_secret`` carries ``secret=True`` field metadata, so ``nemorun.lower`` keeps its
interpolation text unresolved in the IR; the submitter resolves it at submission only. The
experiment record stores the unresolved config, so it holds the reference, never the value.
Secrets the job itself needs are references too: ``env_vars: {HF_TOKEN: {secret: hf-token, key: token}}``.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional

from omegaconf import MISSING

from nemorun.schemas.core import GPUS, NODES, Checked, ExecutorConfig, absolute_path, checked, secret_env_vars

SECRET_SOURCES = ("app_secret", "app_secret_env", "app_secret_file")


@dataclass
class DgxPvcConfig(Checked):
    """An existing PersistentVolumeClaim mounted into every pod of the workload."""

    _path: ClassVar[str] = "pvcs[]."
    # name of the PVC in the project's namespace
    claim_name: str = MISSING
    # absolute mount path inside the container
    path: str = checked(check=absolute_path)
    # Run:ai storage instance name; default: the claim name
    name: Optional[str] = None
    read_only: bool = False
    # false lets Run:ai create the claim when it does not exist
    existing_pvc: bool = True


@dataclass
class DgxCloudExecutorConfig(ExecutorConfig):
    kind: str = "dgxcloud"
    # values are strings, or {secret: <secret name>, key: <key in it>} for a Run:ai secret source
    # (a Kubernetes Secret in the project's namespace, resolved in the pod)
    env_vars: Dict[str, Any] = secret_env_vars("secret", "key")
    # API root including the version: https://<tenant>/api/v1
    base_url: str = MISSING
    # client id of the Run:ai application (not secret)
    app_id: str = MISSING
    # an interpolation resolved at submission only, e.g. ${oc.env:DGX_APP_SECRET}; never a literal
    app_secret: Optional[str] = field(default=None, metadata={"secret": True})
    # name of the environment variable holding the secret (alternative to app_secret)
    app_secret_env: Optional[str] = field(default=None, metadata={"secret": "env"})
    # path of a file holding the secret (alternative to app_secret)
    app_secret_file: Optional[str] = field(default=None, metadata={"secret": "file"})
    # Run:ai project; its id and cluster id are looked up at submission
    project_name: str = MISSING
    # set both to skip the lookup (project id as the API spells it; cluster id is a UUID)
    project_id: Optional[str] = None
    cluster_id: Optional[str] = None
    container_image: str = MISSING
    # pods (1: a training workload; more: a distributed PyTorch workload)
    nodes: int = checked(1, check=NODES)
    # GPU devices per pod
    gpus_per_node: int = checked(0, check=GPUS)
    pvcs: List[DgxPvcConfig] = field(default_factory=list)
    # working directory inside the container; default: the image's (the unpacked code with a packager)
    workdir: Optional[str] = checked(None, check=absolute_path)
    # job folders on a PVC, as mounted both in the pod nemorun launches from and in the job
    # (<pvc_nemo_run_dir>/<experiment>/<id>/<job>, code in its code/); under one of pvcs[].path
    pvc_nemo_run_dir: Optional[str] = checked(None, check=absolute_path)
    # mount a large /dev/shm (NCCL and data loaders need it)
    large_shm: bool = True
    # extra keys merged into the workload's ``spec`` (Run:ai's camelCase names), last word
    custom_spec: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        given = [name for name in SECRET_SOURCES if getattr(self, name)]
        if len(given) != 1:
            which = "none" if not given else " and ".join(given)
            raise ValueError(
                "dgxcloud needs exactly one of app_secret='${oc.env:VAR}', app_secret_env=VAR or "
                f"app_secret_file=PATH (it sets {which})"
            )
        # Only the check, never the value, may appear in a message.
        if self.app_secret and "${" not in self.app_secret:
            raise ValueError(
                "app_secret holds a literal value, which would be stored in the experiment record; "
                "use an interpolation such as ${oc.env:DGX_APP_SECRET}, or app_secret_env / app_secret_file"
            )
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {self.base_url!r} must start with https:// (e.g. https://<tenant>/api/v1)")
        if (self.project_id is None) != (self.cluster_id is None):
            raise ValueError("set both project_id and cluster_id, or neither (then they are looked up by project_name)")
        if self.pvc_nemo_run_dir is not None and pvc_of(self) is None:
            listed = ", ".join(f"{p.path} ({p.claim_name}{', read-only' if p.read_only else ''})" for p in self.pvcs) or "none"
            raise ValueError(f"pvc_nemo_run_dir {self.pvc_nemo_run_dir!r} must lie under the path of a writable pvcs[] entry "
                             f"(pvcs: {listed}): the job reads its code from there")  # fmt: skip


def pvc_of(executor: DgxCloudExecutorConfig) -> Optional[DgxPvcConfig]:
    """The PVC ``pvc_nemo_run_dir`` lies on (the deepest mount path holding it: that one shadows
    the others in the container); None when there is none or it is mounted read-only."""
    path = posixpath.normpath(str(executor.pvc_nemo_run_dir))
    holding = [p for p in executor.pvcs
               if path == posixpath.normpath(p.path) or path.startswith(posixpath.normpath(p.path).rstrip("/") + "/")]
    deepest = max(holding, key=lambda p: len(posixpath.normpath(p.path)), default=None)
    return None if deepest is None or deepest.read_only else deepest


SCHEMAS: dict[str, type] = {"_schema_executor_dgxcloud": DgxCloudExecutorConfig}
