"""Target ``dgxcloud``: a Run:ai (control plane 2.24) workload creation request.

Artifact: ``workload.json`` — the body POSTed as it is: a ``TrainingCreationRequest`` to
``/workloads/trainings`` for one node, a ``DistributedCreationRequest`` (PyTorch) to
``/workloads/distributed`` for more. Options: see :class:`nemorun.schemas.dgxcloud.DgxCloudExecutorConfig`.

Project and cluster ids. The request needs ``projectId`` and ``clusterId`` (a UUID), which only
the service knows (looked up from ``project_name``). Rendering must stay pure, so:

- a dry run (and ``render_dir``) renders marked placeholders: ``projectId`` reads
  ``<looked up at submission: project NAME>`` and ``clusterId`` is the nil UUID — still a valid
  request shape, so the strict schema checks everything else;
- at submission the submitter's ``resolve(job)`` looks the ids up and fills them into the IR
  (:func:`with_ids`) BEFORE the executor renders, validates and records ``workload.json`` once;
  ``submit`` POSTs exactly those bytes, so the record holds what was sent, and it refuses a body
  that still holds a placeholder. Setting ``project_id`` and
  ``cluster_id`` in the config skips the lookup, and the dry run shows the real ids.

Distributed shape: Run:ai's PyTorch workloads are Kubeflow PyTorchJobs — one master pod plus
``numWorkers`` workers — so ``nodes`` pods are 1 master (``masterSpecSameAsWorker``) and
``nodes - 1`` workers; ``minReplicas = maxReplicas = numWorkers`` pins the size (no elasticity).

Command: the API takes ``command`` and ``args`` as single strings and splits them shell-style.
A plain argv becomes ``command`` = its first word and ``args`` = the rest, shell-quoted; a
command the shell must expand (launcher variables) runs under ``bash -c``. Nothing ships files
to the pod, so a function task's ``function.yaml`` travels in the environment variable
``NEMORUN_FUNCTION_SPEC`` and the command writes it to a file before starting the entry point.

Secrets: ``env_vars: {NAME: {secret: s, key: k}}`` becomes the ``EnvironmentVariable`` secret
source ``{"name": NAME, "secret": {"name": s, "key": k}}`` (a Kubernetes Secret in the project's
namespace, read in the pod); the request carries the reference, never a value.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from typing import Any, Mapping

from nemorun.capabilities import Capabilities, Evidence
from nemorun.command import function_spec_text, task_argv
from nemorun.errors import ArtifactError, ConfigError
from nemorun.ir import Job, Rendered
from nemorun.launchers import setup_lines, wrap
from nemorun.render import Raw, is_env_name, render_template, shjoin, shquote
from nemorun.validate import parse_mapping_artifact

ARTIFACT = "workload.json"
PLACEHOLDER_CLUSTER_ID = "00000000-0000-0000-0000-000000000000"
_PLACEHOLDER_PROJECT = "<looked up at submission: project {}>"
# where a function task's spec is written inside the pod, and the variable that carries it there
FUNCTION_SPEC_PATH = "/tmp/nemorun-function.yaml"
FUNCTION_SPEC_ENV = "NEMORUN_FUNCTION_SPEC"
# EnvironmentVariableSecret.name in the 2.24 OpenAPI spec
_SECRET_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# NeMo-Run's limit: leaves room for the suffix Run:ai appends (useGivenNameAsPrefix) within 63
MAX_NAME = 34

# Keys of TrainingSpecSpec / DistributedSpecSpec in the 2.24 OpenAPI spec, for custom_spec checks.
_COMMON_SPEC_KEYS = frozenset(
    "annotations args autoDeletionTimeAfterCompletionSeconds backoffLimit category command compute "
    "createHomeDir environmentVariables exposedUrls image imagePullPolicy imagePullSecrets labels "
    "nodeAffinityRequired nodePools nodeType podAffinity ports preemptibility priorityClass probes "
    "relatedUrls restartPolicy security stdin storage terminateAfterPreemption "
    "terminationGracePeriodSeconds tolerations tty workingDir".split()
)
SPEC_KEYS = {
    "trainings": _COMMON_SPEC_KEYS | {"completions", "parallelism"},
    "distributed": _COMMON_SPEC_KEYS
    | set(
        "cleanPodPolicy distributedFramework maxReplicas minReplicas mpiLauncherCreationPolicy numWorkers "
        "slotsPerWorker sshAuthMountPath".split()
    ),
}


CAPABILITIES = Capabilities(
    executor="dgxcloud",
    # the request carries no code; the image or a PVC must hold it
    packagers=("none",),
    retries="spec.backoffLimit (pod restarts before the workload fails)",
    secret_store=True,
    evidence=Evidence(retries=('"backoffLimit": {n}',)),
)


def workload_kind(nodes: int) -> str:
    """The API's collection for the workload: ``trainings`` or ``distributed``."""
    return "trainings" if nodes == 1 else "distributed"


def placeholder_project_id(project_name: str) -> str:
    return _PLACEHOLDER_PROJECT.format(project_name)


def has_placeholders(body: Mapping[str, Any]) -> bool:
    return body.get("clusterId") == PLACEHOLDER_CLUSTER_ID or str(body.get("projectId", "")).startswith("<")


def with_ids(job: Job, project_id: str, cluster_id: str) -> Job:
    """The same job with the ids the submitter looked up (the IR carries what was probed)."""
    return dataclasses.replace(job, executor=dataclasses.replace(job.executor, project_id=project_id, cluster_id=cluster_id))


def workload_name(job: Job) -> str:
    """A Kubernetes-style name (lower-case letters, digits, '-'; starts with a letter)."""
    base = job.name if job.name == job.experiment_name else f"{job.experiment_name}-{job.name}"
    name = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = f"job-{name}".rstrip("-")
    return name[:MAX_NAME].rstrip("-")


def command_fields(job: Job) -> dict[str, str]:
    """Run:ai takes ``command`` and ``args`` as strings. Anything that needs a shell (the
    launcher's rendezvous lines, shell variables, writing a function task's spec) becomes one
    ``bash -c`` script; a plain argv stays a plain command."""
    argv = wrap(job, task_argv(job, FUNCTION_SPEC_PATH), form="dgxcloud")
    lines = setup_lines(job, "dgxcloud")
    if job.task.kind == "function":
        lines = [*lines, f'printf %s "${FUNCTION_SPEC_ENV}" > {FUNCTION_SPEC_PATH}']
    if lines or any(isinstance(a, Raw) for a in argv):
        script = "; ".join(["set -euo pipefail", *lines, f"exec {shjoin(argv)}"])
        return {"command": "bash", "args": shjoin(["-c", script])}
    fields = {"command": shquote(argv[0])}
    if len(argv) > 1:
        fields["args"] = shjoin(argv[1:])
    return fields


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _check_custom_spec(custom: Mapping[str, Any], kind: str) -> None:
    known = SPEC_KEYS[kind]
    for key in custom:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"executor.custom_spec.{key} is not a key of a Run:ai {kind} workload spec{hint}")


def build_request(job: Job) -> dict[str, Any]:
    ex, res = job.executor, job.resources
    kind = workload_kind(res.nodes)
    spec: dict[str, Any] = {"image": job.image, **command_fields(job)}
    if ex.workdir:
        spec["workingDir"] = ex.workdir
    env = dict(job.env)
    if job.task.kind == "function":
        env[FUNCTION_SPEC_ENV] = function_spec_text(job.task)
    variables = [{"name": k, "value": v} for k, v in env.items()]
    variables += [{"name": k, "secret": {"name": r.name, "key": r.key}} for k, r in job.secrets.items()]
    if variables:
        spec["environmentVariables"] = sorted(variables, key=lambda e: str(e["name"]))
    spec["compute"] = {"gpuDevicesRequest": res.gpus_per_node or 0, "largeShmRequest": ex.large_shm}
    if job.mounts:
        spec["storage"] = {
            "pvc": [
                {"name": m.name or m.source, "claimName": m.source, "path": m.target,
                 "existingPvc": not m.create, "readOnly": m.read_only}
                for m in job.mounts
            ]
        }
    spec["backoffLimit"] = job.retries
    if kind == "distributed":
        workers = res.nodes - 1
        spec.update(distributedFramework="PyTorch", numWorkers=workers, minReplicas=workers, maxReplicas=workers)
    _check_custom_spec(ex.custom_spec, kind)
    spec = _merge(spec, ex.custom_spec)

    request: dict[str, Any] = {
        "name": workload_name(job),
        "useGivenNameAsPrefix": True,
        "projectId": ex.project_id or placeholder_project_id(ex.project_name),
        "clusterId": ex.cluster_id or PLACEHOLDER_CLUSTER_ID,
    }
    if kind == "distributed":
        request["masterSpecSameAsWorker"] = True
    request["spec"] = spec
    return request


def render(job: Job) -> Rendered:
    ex = job.executor
    kind = workload_kind(job.resources.nodes)
    body = render_template("dgxcloud/workload.json.j2", request=build_request(job))
    lookup = "" if ex.project_id else f" (projectId/clusterId looked up from project '{ex.project_name}' at submission)"
    return Rendered(
        target="dgxcloud",
        job_name=job.name,
        artifacts={ARTIFACT: body},
        submit_command=f"POST {ex.base_url.rstrip('/')}/workloads/{kind} < {ARTIFACT}{lookup}",
    )


def validate(rendered: Rendered) -> None:
    """Shape checks that need no schema file; tests check the full strict OpenAPI schema."""
    body = parse_mapping_artifact(ARTIFACT, rendered.artifacts[ARTIFACT], "json")
    spec = body.get("spec") or {}
    problems = [f"{key} is missing" for key in ("name", "projectId", "clusterId") if not body.get(key)]
    problems += [f"spec.{key} must be a non-empty string" for key in ("command", "args", "image") if key in spec and not (isinstance(spec[key], str) and spec[key])]
    problems += [f"environment variable name {e.get('name')!r} is not valid" for e in spec.get("environmentVariables", []) if not is_env_name(str(e.get("name")))]
    problems += [
        f"environment variable {e.get('name')}: secret name {e['secret'].get('name')!r} is not a Kubernetes name (lower-case letters, digits, '-')"
        for e in spec.get("environmentVariables", [])
        if "secret" in e and not _SECRET_NAME.match(str(e["secret"].get("name", "")))
    ]
    if problems:
        raise ArtifactError(f"{ARTIFACT}: {'; '.join(problems)}")
