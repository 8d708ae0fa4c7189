"""Target ``kubeflow``: a Kubeflow Trainer (v2.2 and later) TrainJob, plus the ConfigMap of its code.

Artifacts:

- ``trainjob.yaml``: ``trainer.kubeflow.org/v1alpha1`` TrainJob referencing a
  (Cluster)TrainingRuntime. The trainer container is the runtime's ``node``; numNodes,
  numProcPerNode, resourcesPerNode, env and the command are set on ``spec.trainer``. Pod-level
  settings (volumes, the code mount, tolerations, node selector, affinity) go into one
  ``spec.runtimePatches`` entry (manager ``nemorun``) for the ``node`` replicated job — NOT
  ``podTemplateOverrides``, which Trainer v2.2 removed and a v2.2+ apiserver silently prunes.
- ``configmap.yaml`` (when code or a function spec is shipped): the packaged files (see
  :mod:`nemorun.configmap_packaging` for the key mapping and the 1 MiB check) and, for function
  tasks, ``.nemorun/function.yaml`` and the entry point; mounted read-only at ``executor.code_dir``,
  where the command starts. ``packager=configmap`` selects files itself; git/pattern/hybrid
  archives arrive as their files, read by the packaging step (a cluster has nowhere to unpack a
  tar.gz before the pod starts, and a ConfigMap needs no registry or shared file system).

Pods with GPUs get a memory-backed ``/dev/shm`` (``emptyDir: {medium: Memory}``, sized by
``executor.shm_size``, else bounded by the pod's memory like DGX Cloud's large /dev/shm): the
container runtime's 64 MiB default breaks NCCL and DataLoader workers. ``numProcPerNode`` is what
the launcher starts per node (``launcher.nproc_per_node``, else the GPUs per node).

Retries are refused: ``runtimePatches`` reach only the pods' template, while a restart policy
(JobSet ``failurePolicy.maxRestarts``, Job ``backoffLimit``) lives in the (Cluster)TrainingRuntime.

Secrets: ``env_vars: {NAME: {secret: s, key: k}}`` becomes ``valueFrom.secretKeyRef`` in the
trainer's env; the kubelet reads the Secret (in the TrainJob's namespace) when it starts a pod.

The command always runs through ``bash -c``: the trainer has no working-directory field, so
packaged code is entered with ``cd``, and launcher forms need the shell for ``$PET_*`` variables.

Pure like every render: the packaged files were read by the packaging step before compiling
and arrive in ``job.package.files``.
"""
from __future__ import annotations

import os
import posixpath
import re
from typing import Any, Optional


from nemorun import configmap_packaging as cmp
from nemorun.capabilities import ARCHIVE_PACKAGERS, Capabilities, Evidence, check_packager
from nemorun.command import ENTRY_FILE, ENTRY_SOURCE, function_spec_text, task_argv
from nemorun.errors import ArtifactError, ConfigError
from nemorun.ir import Job, Rendered
from nemorun.launchers import nproc_per_node, setup_lines, wrap
from nemorun.render import render_template, shjoin, shquote
from nemorun.schemas.kubeflow import ConfigMapPackagerConfig, KubeflowExecutorConfig
from nemorun.validate import parse_mapping_artifact

TRAINJOB, CONFIGMAP = "trainjob.yaml", "configmap.yaml"
API_GROUP, API_VERSION, PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
CONTAINER = "node"  # the trainer container and replicated job of every Trainer runtime
CODE_VOLUME = "nemorun-code"
SHM_VOLUME, SHM_PATH = "nemorun-dshm", "/dev/shm"
# docker units (ir.Resources.shm_size) -> Kubernetes quantity suffix
_SHM_UNITS = {"": "", "b": "", "k": "Ki", "m": "Mi", "g": "Gi"}
FUNCTION_PATH = ".nemorun/function.yaml"
ENTRY_PATH = f".nemorun/{ENTRY_FILE}"
MAX_NAME = 45  # TrainJob names may have 63 chars; JobSet derives longer Job and pod names from it
_RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_RFC1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

CAPABILITIES = Capabilities(
    executor="kubeflow",
    # the packaged files (configmap's own, or an archive's) in a ConfigMap mounted at executor.code_dir
    packagers=("none", "configmap", *ARCHIVE_PACKAGERS),
    # nemorun.packaging reads an archive packager's files (git, pattern, hybrid) into
    # ir.Package.files before compiling: the ConfigMap carries them, not the tar.gz
    code_in_artifact="files",
    retries=None,
    no_retries_why=("a TrainJob's runtimePatches reach only the pod template; JobSet failurePolicy and Job backoffLimit "
                    "are set by the (Cluster)TrainingRuntime"),
    secret_store=True,
    evidence=Evidence(code=("# The job's code: {files} file(s)", "cd /nemorun/code")),
)


def _dns_label(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def trainjob_name(job: Job) -> str:
    """``<job name>-<experiment id>``, an RFC 1035 label short enough for JobSet's derived names."""
    suffix = _dns_label(job.experiment_id)
    base = _dns_label(job.name).lstrip("0123456789-") or "job"
    return f"{base[: MAX_NAME - len(suffix) - 1].rstrip('-')}-{suffix}"


def _labels(job: Job) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "nemorun", "nemorun/experiment-id": _dns_label(job.experiment_id)[:63].strip("-")}


def _bundle(job: Job, name: str) -> Optional[cmp.ConfigMapBundle]:
    packager = job.packager
    kind = packager.kind
    check_packager("kubeflow", kind)
    extra = ([(FUNCTION_PATH, function_spec_text(job.task).encode()), (ENTRY_PATH, ENTRY_SOURCE.encode())]
             if job.task.kind == "function" else [])
    if kind == "none" and not extra:
        return None
    cfg = packager if isinstance(packager, ConfigMapPackagerConfig) else None
    if cfg is not None and job.package.kind != "configmap":
        raise ConfigError("packager=configmap: the job was compiled without its package (nemorun.packaging stages it before compiling)")
    if kind in ARCHIVE_PACKAGERS and (job.package.kind != kind or not job.package.files):
        raise ConfigError(f"packager={kind}: the job was compiled without the archive's files "
                          "(nemorun.packaging reads them for executor=kubeflow before compiling)")  # fmt: skip
    found = cmp.bundle(cfg, files=dict(job.package.files), name_suffix=name, namespace=job.executor.namespace, extra=extra)
    script = job.task.script
    if cfg is not None and job.task.kind == "script" and script and not os.path.isabs(script) and not cmp.script_is_packaged(script, list(found.files)):
        raise ConfigError(
            f"task.script {script} is not among the packaged files (packager.include_pattern={cfg.include_pattern}, relative_path={cfg.relative_path})"
        )
    return found


def _env(job: Job) -> list[dict[str, Any]]:
    """Plain values, and secret references as ``secretKeyRef`` (the kubelet reads the Secret)."""
    plain: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in job.env.items()]
    refs = [{"name": k, "valueFrom": {"secretKeyRef": {"name": r.name, "key": r.key}}} for k, r in job.secrets.items()]
    return sorted(plain + refs, key=lambda e: str(e["name"]))


def _secret_ref_problems(env: list[dict[str, Any]]) -> list[str]:
    """What the kubelet would refuse only when it starts the pods (the TrainJob's schema takes any string)."""
    problems = []
    for e in env:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            continue
        name, key = str(ref.get("name", "")), str(ref.get("key", ""))
        if len(name) > 253 or not all(_RFC1123.match(part) for part in name.split(".")):
            problems.append(f"env {e['name']}: secret name {name!r} is not a DNS subdomain (lower-case letters, digits, '-', '.')")
        if len(key) > 253 or not _SECRET_KEY.match(key):
            problems.append(f"env {e['name']}: secret key {key!r} may hold only letters, digits, '-', '_' and '.'")
    return problems


def _resources(job: Job) -> dict[str, dict[str, str]]:
    ex, res = _executor(job), job.resources
    # limits are Kubernetes' own notion: they stay on the executor
    requests = {"cpu": res.cpus, "memory": res.mem}
    limits = {"cpu": ex.cpu_limit, "memory": ex.memory_limit}
    if res.gpus_per_node:
        requests[ex.gpu_resource] = limits[ex.gpu_resource] = str(res.gpus_per_node)
    out = {"limits": {k: str(v) for k, v in limits.items() if v}, "requests": {k: str(v) for k, v in requests.items() if v}}
    return {k: v for k, v in out.items() if v}


def _shm_volume(job: Job) -> Optional[dict[str, Any]]:
    """A memory-backed /dev/shm for pods with GPUs (or any pod, when shm_size is set); None when
    the user mounts something there already (theirs wins)."""
    ex = _executor(job)
    size = ex.shm_size
    if not (job.resources.gpus_per_node or size) or any(m.get("mountPath") == SHM_PATH for m in ex.volume_mounts):
        return None
    empty_dir: dict[str, Any] = {"medium": "Memory"}
    if size:
        number, unit = re.fullmatch(r"(\d+)([bkmg]?)", str(size).lower()).groups()  # type: ignore[union-attr]
        empty_dir["sizeLimit"] = f"{number}{_SHM_UNITS[unit]}"
    return {"name": SHM_VOLUME, "emptyDir": empty_dir}


def _pod_patch(job: Job, bundle: Optional[cmp.ConfigMapBundle]) -> dict[str, Any]:
    """The pod spec patch of the ``node`` replicated job (``runtimePatches``)."""
    ex = _executor(job)
    volumes = [dict(v) for v in ex.volumes]
    mounts = [dict(m) for m in ex.volume_mounts]
    if bundle is not None:
        volumes.append({"name": CODE_VOLUME, "configMap": {"name": bundle.name, "items": bundle.items()}})
        mounts.append({"name": CODE_VOLUME, "mountPath": ex.code_dir, "readOnly": True})
    shm = _shm_volume(job)
    if shm is not None:
        volumes.append(shm)
        mounts.append({"name": SHM_VOLUME, "mountPath": SHM_PATH})
    spec: dict[str, Any] = {}
    if mounts:
        spec["containers"] = [{"name": CONTAINER, "volumeMounts": mounts}]
    if volumes:
        spec["volumes"] = volumes
    if ex.node_selector:
        spec["nodeSelector"] = {str(k): str(v) for k, v in ex.node_selector.items()}
    if ex.tolerations:
        spec["tolerations"] = [dict(t) for t in ex.tolerations]
    if ex.affinity:
        spec["affinity"] = dict(ex.affinity)
    return spec


def _shell(job: Job, bundle: Optional[cmp.ConfigMapBundle]) -> str:
    ex = _executor(job)
    spec_path = f"{ex.code_dir.rstrip('/')}/{FUNCTION_PATH}"
    argv = wrap(job, task_argv(job, spec_path), form="kubernetes")
    lines = setup_lines(job, "kubernetes")
    if bundle is not None and job.packager.kind != "none":
        lines = [f"cd {shquote(posixpath.join(ex.code_dir, job.package.workdir_subpath).rstrip('/') or '/')}", *lines]
    return "\n".join([*lines, shjoin(argv)])


def _executor(job: Job) -> KubeflowExecutorConfig:
    assert isinstance(job.executor, KubeflowExecutorConfig), job.target
    return job.executor


def render(job: Job) -> Rendered:
    ex = _executor(job)
    if not job.image:
        raise ConfigError("executor.image is required for executor=kubeflow")
    name = trainjob_name(job)
    bundle = _bundle(job, name)
    labels = _labels(job)
    context = {
        "job": job,
        "tj_name": name,
        "labels": labels,
        "runtime_kind": getattr(ex.runtime_kind, "value", ex.runtime_kind),
        "command": ["/bin/bash", "-c", _shell(job, bundle)],
        "env": _env(job),
        "resources": _resources(job),
        "pod_patch": _pod_patch(job, bundle),
        "nproc_per_node": nproc_per_node(job),
    }
    artifacts = {TRAINJOB: render_template("kubeflow/trainjob.yaml.j2", **context)}
    submit = f"kubectl create -n {shquote(ex.namespace)} -f {TRAINJOB}"
    if bundle is not None:
        manifest = bundle.manifest(labels)
        artifacts[CONFIGMAP] = render_template(
            "kubeflow/configmap.yaml.j2", job=job, manifest=manifest, files=len(bundle.files), code_dir=ex.code_dir
        )
        submit = f"kubectl apply -n {shquote(ex.namespace)} -f {CONFIGMAP} && {submit}"
    return Rendered(target="kubeflow", job_name=job.name, artifacts=artifacts, submit_command=submit)


def manifests(rendered: Rendered) -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
    """(TrainJob, ConfigMap or None) as objects, exactly as rendered."""

    def load(artifact: str) -> dict[str, Any]:
        return parse_mapping_artifact(artifact, rendered.artifacts[artifact], "yaml")

    return load(TRAINJOB), (load(CONFIGMAP) if CONFIGMAP in rendered.artifacts else None)


def validate(rendered: Rendered) -> None:
    """What the apiserver would refuse without a schema: names, and the ConfigMap's keys and size.

    The full strict CRD + CEL check runs in the tests (``tests/contracts``); at submission the
    apiserver is asked for strict field validation, so unknown fields are refused, not dropped.
    """
    trainjob, configmap = manifests(rendered)
    name = str(trainjob.get("metadata", {}).get("name", ""))
    if not _RFC1035.match(name) or len(name) > 63:
        raise ArtifactError(f"{TRAINJOB}: metadata.name {name!r} is not an RFC 1035 label of at most 63 characters")
    problems = _secret_ref_problems(list((trainjob.get("spec", {}).get("trainer") or {}).get("env") or []))
    if problems:
        raise ArtifactError(f"{TRAINJOB}: {'; '.join(problems)}")
    if configmap is not None:
        files = cmp.files_of(configmap)
        bad = [k for k in list(configmap.get("data") or {}) + list(configmap.get("binaryData") or {}) if cmp.encode_key(cmp.decode_key(k)) != k]
        if bad:
            raise ArtifactError(f"{CONFIGMAP}: keys are not encoded paths: {bad[:3]}")
        cmp.check_size(str(configmap["metadata"]["name"]), files)
