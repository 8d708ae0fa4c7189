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

Name: ``<experiment>-<job>`` cut to fit, then 6 hex digits of the experiment id and job name, so
two experiments of the same name never share a name prefix: crash recovery (the submitter's
``find``) looks the workload up by that prefix (Run:ai appends random characters to it).

Command: the API takes ``command`` and ``args`` as single strings and splits them shell-style.
A plain argv becomes ``command`` = its first word and ``args`` = the rest, shell-quoted; a
command the shell must expand (launcher variables) runs under ``bash -c``. Without a job folder
on a PVC nothing ships files to the pod, so a function task's ``function.yaml`` travels in the
environment variable ``NEMORUN_FUNCTION_SPEC`` and the command writes it to a file before
starting the entry point.

Code and job folders on a PVC (``pvc_nemo_run_dir``, under a writable ``pvcs[].path``). nemorun
launches from a pod that mounts the same PVC at the same path (as NeMo-Run does): at submission
the submitter unpacks the archive into ``<pvc_nemo_run_dir>/<experiment>/<id>/<job>/code`` and
writes this render's other artifacts (a function task's ``function.yaml`` and
``nemorun_entry.py``) into that job folder. The render only names those paths: ``workingDir`` is
the code folder (``packager=git|pattern|hybrid``), the function task runs the files in the job
folder, and the annotation ``nemorun/code-sha256`` names the code's digest.

Secrets: ``env_vars: {NAME: {secret: s, key: k}}`` becomes the ``EnvironmentVariable`` secret
source ``{"name": NAME, "secret": {"name": s, "key": k}}`` (a Kubernetes Secret in the project's
namespace, read in the pod); the request carries the reference, never a value.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import posixpath
import re
import shlex
from typing import Any, Mapping, Optional

from nemorun.capabilities import ARCHIVE_PACKAGERS, Capabilities, Evidence
from nemorun.command import ENTRY_SOURCE, FUNCTION_SPEC, function_artifacts, function_spec_text, task_argv, write_entry_line
from nemorun.errors import ArtifactError, ConfigError
from nemorun.ir import Job, Rendered
from nemorun.launchers import setup_lines, wrap
from nemorun.render import Raw, is_env_name, render_template, shjoin, shquote, tagged_dns_name
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


CODE_DIR = "code"
CODE_ANNOTATION = "nemorun/code-sha256"

CAPABILITIES = Capabilities(
    executor="dgxcloud",
    # the submitter unpacks the archive on a PVC (pvc_nemo_run_dir) the workload mounts
    packagers=("none", *ARCHIVE_PACKAGERS),
    retries="spec.backoffLimit (pod restarts before the workload fails)",
    secret_store=True,
    evidence=Evidence(retries=('"backoffLimit": {n}',), code=(f'"name": "{CODE_ANNOTATION}"', '"value": "{sha256}"', f'/{CODE_DIR}"')),
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
    """A Kubernetes-style name (lower-case letters, digits, '-'; starts with a letter) ending in
    6 hex digits of the experiment id and job name: unique per experiment, found again by it."""
    base = job.name if job.name == job.experiment_name else f"{job.experiment_name}-{job.name}"
    return tagged_dns_name(base, f"{job.experiment_id}/{job.name}", MAX_NAME)


def pvc_job_dir(job: Job) -> Optional[str]:
    """The job's folder on the PVC (``<pvc_nemo_run_dir>/<experiment>/<id>/<job>``), the same
    path in the launching pod and in the workload; None without ``pvc_nemo_run_dir``."""
    base = job.executor.pvc_nemo_run_dir
    return posixpath.join(str(base), job.experiment_name, job.experiment_id, job.name) if base else None


def code_dir(job: Job) -> Optional[str]:
    """Where the submitter unpacks the shipped archive (None: no code is shipped)."""
    folder = pvc_job_dir(job)
    return posixpath.join(folder, CODE_DIR) if folder and job.package.archive else None


def working_dir(job: Job) -> Optional[str]:
    """``workingDir`` of the workload: the unpacked code (its ``workdir_subpath``), else
    ``executor.workdir``, else the image's (None)."""
    code, ex = code_dir(job), job.executor
    if job.package.archive and code is None:
        raise ConfigError(f"packager={job.package.kind} on executor=dgxcloud unpacks the code on a PVC the workload mounts: "
                          "set executor.pvc_nemo_run_dir to a folder under one of executor.pvcs[].path")  # fmt: skip
    if code is None:
        return ex.workdir or None
    if ex.workdir:
        raise ConfigError(f"executor.workdir={ex.workdir} and packager={job.package.kind} both set the workload's working "
                          f"directory; drop executor.workdir (the code is unpacked into {code})")  # fmt: skip
    return posixpath.join(code, job.package.workdir_subpath).rstrip("/")


def command_fields(job: Job) -> dict[str, str]:
    """Run:ai takes ``command`` and ``args`` as strings. Anything that needs a shell (the
    launcher's rendezvous lines, shell variables, writing a function task's spec) becomes one
    ``bash -c`` script; a plain argv stays a plain command. With a job folder on the PVC, a
    function task runs the spec and entry point the submitter wrote there."""
    folder = pvc_job_dir(job)
    spec_path = posixpath.join(folder, FUNCTION_SPEC) if folder else FUNCTION_SPEC_PATH
    argv = wrap(job, task_argv(job, spec_path), form="dgxcloud")
    lines = setup_lines(job, "dgxcloud")
    if job.task.kind == "function" and not folder:
        lines = [*lines, f'printf %s "${FUNCTION_SPEC_ENV}" > {FUNCTION_SPEC_PATH}', write_entry_line()]
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
    workdir = working_dir(job)
    if workdir:
        spec["workingDir"] = workdir
    if job.package.archive:
        spec["annotations"] = [{"name": CODE_ANNOTATION, "value": str(job.package.sha256)}]
    env = dict(job.env)
    if job.task.kind == "function" and not pvc_job_dir(job):
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
    folder = pvc_job_dir(job)
    # written by the submitter into the job folder on the PVC
    files = function_artifacts(job) if folder else {}
    shipped = f"unpack the code into {code_dir(job)}, " if code_dir(job) else ""
    placed = f"write {', '.join(files)} into {folder}, " if files else ""
    return Rendered(
        target="dgxcloud",
        job_name=job.name,
        artifacts={ARTIFACT: body, **files},
        submit_command=f"{shipped}{placed}POST {ex.base_url.rstrip('/')}/workloads/{kind} < {ARTIFACT}{lookup}",
        views={COMMAND_VIEW: command_view(body)},
    )


COMMAND_VIEW = "the job's command (spec.command + spec.args of workload.json)"


def command_view(body: str) -> str:
    """What the container runs, as a person reads it: a ``bash -c`` script one statement a line
    (in the JSON it is one shell-quoted string), a plain command as one line; nemorun's own entry
    point (the same bytes in every job) shortened to its size."""
    spec = json.loads(body)["spec"]
    command, args = spec.get("command", ""), spec.get("args", "")
    words = shlex.split(args) if args else []
    if command != "bash" or len(words) != 2 or words[0] != "-c":
        return f"{command} {args}".strip()
    script = words[1].replace(shquote(ENTRY_SOURCE), f"<the nemorun entry point: nemorun/entry.py, {len(ENTRY_SOURCE)} bytes>")
    statements = script.split("; ")
    try:  # one a line, unless a "; " was inside quotes (then the script stays one line)
        for statement in statements:
            shlex.split(statement)
    except ValueError:
        return script
    return "\n".join(statements)


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
