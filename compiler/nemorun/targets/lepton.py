"""Target ``lepton``: a DGX Cloud Lepton batch job (leptonai 0.47, ``leptonai.api.v2``).

Artifact: ``job.json`` — the wire body of ``POST /jobs``: what ``LeptonJob(...).dict(exclude_none=True,
by_alias=True)`` gives, defaults included (``envs``/``mounts``/``image_pull_secrets`` lists,
``completions``/``parallelism``, ``ttl_seconds_after_finished``), so the SDK sends it unchanged.
Options: :class:`nemorun.schemas.lepton.LeptonExecutorConfig`.

- ``metadata.id``: the job name Lepton requires (``^[a-z][a-z0-9-]*$``, at most 36 characters, not
  ending in ``-`` or ``by-lepton``): the job name, then 6 hex digits of the experiment id so two
  experiments never collide in a workspace.
- Replicas: ``completions = parallelism = nodes``; more than one node turns on
  ``intra_job_communication`` (replicas reach each other by name; the launcher's lepton form
  derives the rendezvous from ``LEPTON_JOB_*``).
- Command: ``/bin/bash -c <script>``: ``pre_launch_commands``, the launcher's rendezvous lines,
  for a function task a line writing its spec, then ``exec`` the command.
- Secrets: ``env_vars: {NAME: {secret: ref}}`` becomes ``value_from.secret_name_ref``; the value
  stays in the workspace's secret store.

Node group id. Affinity takes node-group *ids*, which only the workspace knows. Rendering stays
pure: when only ``node_group`` (a name) is set, the dry run shows the marked placeholder
``<looked up at submission: node group NAME>`` in ``allowed_dedicated_node_groups``; at submission
the submitter's ``resolve(job)`` lists the node groups and fills the id into the IR
(:func:`with_node_group_id`) before the executor renders, validates and records ``job.json``
once; ``submit`` sends exactly it. Setting
``node_group_id`` skips the lookup.
"""
from __future__ import annotations

import dataclasses
import hashlib
import posixpath
import re
from typing import Any, Mapping

from nemorun.capabilities import Capabilities, Evidence
from nemorun.command import REMOTE_FUNCTION_SPEC, task_argv, write_function_spec_line
from nemorun.errors import ArtifactError
from nemorun.ir import Job, Rendered, shm_mib
from nemorun.launchers import setup_lines, wrap
from nemorun.render import is_env_name, render_template, shjoin
from nemorun.validate import parse_mapping_artifact

ARTIFACT = "job.json"
MAX_NAME = 36
_PLACEHOLDER = "<looked up at submission: node group {}>"
_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
# leptonai/api/v2/job_validation.py::LEPTON_RESERVED_MOUNT_PATHS (exact paths; descendants are fine)
RESERVED_MOUNT_PATHS = frozenset(
    "/ /bin /boot /dev /etc /lib /lib64 /media /opt /proc /run /sbin /srv /sys /usr /usr/bin /usr/lib "
    "/usr/local /usr/sbin /var /sys/fs/cgroup /sys/kernel/security /proc/sys /proc/bus".split()
)


CAPABILITIES = Capabilities(
    executor="lepton",
    # the job body carries no code; the image or a mounted storage path must hold it
    packagers=("none",),
    retries="spec.max_job_failure_retry",
    secret_store=True,
    evidence=Evidence(retries=('"max_job_failure_retry": {n}',)),
)


def job_id(job: Job) -> str:
    digest = hashlib.sha256(f"{job.experiment_id}/{job.name}".encode()).hexdigest()[:6]
    base = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", job.name.lower())).strip("-")
    if not base or not base[0].isalpha():
        base = f"job-{base}".rstrip("-")
    return f"{base[: MAX_NAME - 7].rstrip('-')}-{digest}"


def placeholder(node_group: str) -> str:
    return _PLACEHOLDER.format(node_group)


def has_placeholder(body: Mapping[str, Any]) -> bool:
    groups = ((body.get("spec") or {}).get("affinity") or {}).get("allowed_dedicated_node_groups") or []
    return any(str(g).startswith("<") for g in groups)


def with_node_group_id(job: Job, node_group_id: str) -> Job:
    """The same job with the id the submitter looked up (the IR carries what was probed)."""
    return dataclasses.replace(job, executor=dataclasses.replace(job.executor, node_group_id=node_group_id))


def command(job: Job) -> list[str]:
    argv = wrap(job, task_argv(job, REMOTE_FUNCTION_SPEC), form="lepton")
    lines = ["set -euo pipefail", *job.executor.pre_launch_commands, *setup_lines(job, "lepton")]
    if job.task.kind == "function":
        lines.append(write_function_spec_line(job.task))
    lines.append(f"exec {shjoin(argv)}")
    return ["/bin/bash", "-c", "\n".join(lines)]


def _envs(job: Job) -> list[dict[str, Any]]:
    plain = [{"name": k, "value": v} for k, v in job.env.items()]
    refs = [{"name": k, "value_from": {"secret_name_ref": ref.name}} for k, ref in job.secrets.items()]
    return sorted(plain + refs, key=lambda e: str(e["name"]))


def build_body(job: Job) -> dict[str, Any]:
    ex, res = job.executor, job.resources
    spec: dict[str, Any] = {"resource_shape": ex.resource_shape}
    group = ex.node_group_id or (placeholder(ex.node_group) if ex.node_group else None)
    if group:
        spec["affinity"] = {"allowed_dedicated_node_groups": [group]}
    spec["container"] = {"image": job.image, "command": command(job)}
    if res.shm_size is not None:
        spec["shared_memory_size"] = shm_mib(res.shm_size)
    spec["completions"] = spec["parallelism"] = res.nodes
    if job.retries:
        spec["max_job_failure_retry"] = job.retries
    spec["envs"] = _envs(job)
    spec["mounts"] = [
        {"path": m.subpath, "from": m.source, "mount_path": m.target, **({"mount_options": {"read_only": True}} if m.read_only else {})}
        for m in job.mounts
    ]
    spec["image_pull_secrets"] = list(ex.image_pull_secrets)
    spec["ttl_seconds_after_finished"] = ex.ttl_seconds_after_finished
    if res.nodes > 1:
        spec["intra_job_communication"] = True
    if ex.priority:
        spec["queue_config"] = {"priority_class": ex.priority}
    if ex.node_reservation:
        spec["reservation_config"] = {"reservation_id": ex.node_reservation}
    return {"metadata": {"id": job_id(job)}, "spec": spec}


def render(job: Job) -> Rendered:
    ex = job.executor
    body = render_template("lepton/job.json.j2", body=build_body(job))
    lookup = f" (node group '{ex.node_group}' resolved to its id at submission)" if ex.node_group and not ex.node_group_id else ""
    return Rendered(
        target="lepton",
        job_name=job.name,
        artifacts={ARTIFACT: body},
        submit_command=f"leptonai APIClient().job.create({ARTIFACT}) -> POST <workspace>/jobs{lookup}",
    )


def validate(rendered: Rendered) -> None:
    """Lepton's client-side rules that need no SDK; tests add the strict job schema."""
    body = parse_mapping_artifact(ARTIFACT, rendered.artifacts[ARTIFACT], "json")
    name = str(body["metadata"]["id"])
    spec = body["spec"]
    problems = [] if _NAME.match(name) and len(name) <= MAX_NAME and not name.endswith(("-", "by-lepton")) else [f"job name {name!r} is not valid for Lepton"]
    problems += [f"environment variable name {e['name']!r} is not valid" for e in spec["envs"] if not is_env_name(str(e["name"]))]
    for m in spec["mounts"]:
        path = str(m["mount_path"])
        if not path.startswith("/") or "/" + posixpath.normpath(path).lstrip("/") in RESERVED_MOUNT_PATHS:
            problems.append(f"mount_path {path!r} must be an absolute path that Lepton does not reserve")
    if problems:
        raise ArtifactError(f"{ARTIFACT}: {'; '.join(problems)}")
