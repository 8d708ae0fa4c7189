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
- Command: ``/bin/bash -c <script>``: the shipped code (below), ``pre_launch_commands``, the
  launcher's rendezvous lines, for a function task lines writing its spec and entry point into a
  folder of this job in the replica's ``/tmp``, then ``exec`` the command.
- Secrets: ``env_vars: {NAME: {secret: ref}}`` becomes ``value_from.secret_name_ref``; the value
  stays in the workspace's secret store.
- GPUs: ``gpus_per_node`` defaults to the resource shape's count and must match it (schema).

Code (``packager=git|pattern|hybrid``). The leptonai SDK has no storage-upload call, and a data
mover job (NeMo-Run's way) is a second job to create, wait for and clean up, whose command carries
the same base64 archive anyway. So the job's own command carries it: the archive's bytes travel
in the IR (``ir.Package.archive_data``, read at packaging time: this module declares
``code_in_artifact="bytes"``), base64-encoded in the script; the script unpacks them into
``<nemo_run_dir>/<experiment>/<id>/<job>/code`` on the mounted storage (into the replica's own
``/tmp`` without ``nemo_run_dir``), skipping that when ``.nemorun-sha256`` there already names
the digest, and ``cd``s there. Replicas unpack into a private folder renamed into place, so
concurrent replicas never see half an archive. Size limit: the script is ONE argument of
``/bin/bash -c``, and Linux refuses a single argument longer than ``MAX_ARG_STRLEN`` (32 pages,
131072 bytes including its NUL) with E2BIG when the container starts; a script that would not fit
is refused at render time in one line instead of failing on the node. The same limit holds for
each environment string (``NAME=value``). And the whole body becomes a Kubernetes object under
Lepton, which the API server stores in etcd (default request limit 1.5 MiB,
``--max-request-bytes``); a ``job.json`` over :data:`MAX_BODY_BYTES` (1 MiB, room left for what
the service adds) is refused at render time too, so no limit is met only after the user waited.

Node group id. Affinity takes node-group *ids*, which only the workspace knows. Rendering stays
pure: when only ``node_group`` (a name) is set, the dry run shows the marked placeholder
``<looked up at submission: node group NAME>`` in ``allowed_dedicated_node_groups``; at submission
the submitter's ``resolve(job)`` lists the node groups and fills the id into the IR
(:func:`with_node_group_id`) before the executor renders, validates and records ``job.json``
once; ``submit`` sends exactly it. Setting
``node_group_id`` skips the lookup.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import posixpath
import re
from typing import Any, Mapping, Optional

from nemorun.capabilities import ARCHIVE_PACKAGERS, Capabilities, Evidence
from nemorun.command import ENTRY_FILE, ENTRY_SOURCE, FUNCTION_SPEC, function_spec_text, task_argv, write_entry_line
from nemorun.errors import ArtifactError, ConfigError
from nemorun.ir import Job, Rendered, shm_mib
from nemorun.launchers import setup_lines, wrap
from nemorun.render import is_env_name, render_template, shjoin, shquote, tagged_dns_name
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


# Linux's MAX_ARG_STRLEN (32 * 4096): the longest single argument (or NAME=value environment
# string) execve accepts, NUL included
MAX_SCRIPT_BYTES = 32 * 4096 - 1
# the largest job.json sent: under etcd's default 1.5 MiB request limit, with room for the
# status and defaults the service adds to the stored object
MAX_BODY_BYTES = 1024 * 1024
CODE_DIR = "code"
# the digest of the code unpacked in a code folder (written last, inside it, before it is renamed into place)
CODE_MARKER = ".nemorun-sha256"
# where replicas unpack the code when no nemo_run_dir is set (inside each replica's container)
LOCAL_RUN_DIR = "/tmp/nemorun"

CAPABILITIES = Capabilities(
    executor="lepton",
    # the archive travels base64-encoded in the job's command, unpacked on the node (see above)
    packagers=("none", *ARCHIVE_PACKAGERS),
    # packaging reads the archive's bytes into ir.Package.archive_data
    code_in_artifact="bytes",
    retries="spec.max_job_failure_retry",
    secret_store=True,
    evidence=Evidence(retries=('"max_job_failure_retry": {n}',),
                      code=("{sha256}", "base64 -d | tar -xzf -", f"/{CODE_DIR}")),
)  # fmt: skip


def job_id(job: Job) -> str:
    return tagged_dns_name(job.name, f"{job.experiment_id}/{job.name}", MAX_NAME)


def placeholder(node_group: str) -> str:
    return _PLACEHOLDER.format(node_group)


def has_placeholder(body: Mapping[str, Any]) -> bool:
    groups = ((body.get("spec") or {}).get("affinity") or {}).get("allowed_dedicated_node_groups") or []
    return any(str(g).startswith("<") for g in groups)


def with_node_group_id(job: Job, node_group_id: str) -> Job:
    """The same job with the id the submitter looked up (the IR carries what was probed)."""
    return dataclasses.replace(job, executor=dataclasses.replace(job.executor, node_group_id=node_group_id))


def job_dir(job: Job) -> str:
    """The job's folder on the node: ``<nemo_run_dir>/<experiment>/<id>/<job>`` on the mounted
    storage, or under the replica's own ``/tmp`` without ``nemo_run_dir``."""
    base = job.executor.nemo_run_dir or LOCAL_RUN_DIR
    return posixpath.join(str(base), job.experiment_name, job.experiment_id, job.name)


def code_dir(job: Job) -> Optional[str]:
    """Where the shipped code is unpacked on the node (None: no code is shipped)."""
    if not job.package.archive:
        return None
    return posixpath.join(job_dir(job), CODE_DIR)


def unpack_lines(job: Job) -> list[str]:
    """Shell lines that put the shipped archive into :func:`code_dir` (unless a replica or an
    earlier attempt already did, with the same digest) and ``cd`` into the working directory."""
    pkg = job.package
    if pkg.archive_data is None:
        raise ConfigError(f"packager={pkg.kind}: the job was compiled without the archive's bytes (nemorun.packaging reads them for executor=lepton)")
    code, sha = str(code_dir(job)), str(pkg.sha256)
    encoded = base64.b64encode(pkg.archive_data).decode("ascii")
    workdir = posixpath.join(code, pkg.workdir_subpath).rstrip("/")
    have = f'"$(cat "$nemorun_code"/{CODE_MARKER} 2>/dev/null)"'
    return [
        f"nemorun_code={shquote(code)}",
        f"if [ {have} != {sha} ]; then",
        '  nemorun_tmp="$nemorun_code.tmp-${HOSTNAME:-replica}-$$"',
        '  rm -rf "$nemorun_tmp" && mkdir -p "$nemorun_tmp"',
        f"  printf %s {encoded} | base64 -d | tar -xzf - -C \"$nemorun_tmp\"",
        f'  printf "%s\\n" {sha} > "$nemorun_tmp"/{CODE_MARKER}',
        '  mv -T "$nemorun_tmp" "$nemorun_code" 2>/dev/null || rm -rf "$nemorun_tmp"',
        f'  [ {have} = {sha} ] || {{ echo "nemorun: $nemorun_code holds code other than sha256 {sha}" >&2; exit 1; }}',
        "fi",
        f"cd {shquote(workdir)}",
    ]


def function_dir(job: Job) -> str:
    """Where the command writes a function task's spec and entry point: in the replica's own
    ``/tmp`` (replicas sharing a mount would write one file at once), in a folder of this job."""
    return posixpath.join(LOCAL_RUN_DIR, job.experiment_name, job.experiment_id, job.name)


def command(job: Job) -> list[str]:
    folder = function_dir(job)
    spec = posixpath.join(folder, FUNCTION_SPEC)
    argv = wrap(job, task_argv(job, spec), form="lepton")
    # the code first, so pre_launch_commands run in it (pip install -r requirements.txt)
    lines = ["set -euo pipefail", *(unpack_lines(job) if job.package.archive else []), *job.executor.pre_launch_commands]
    lines.extend(setup_lines(job, "lepton"))
    if job.task.kind == "function":
        lines += [f"mkdir -p {shquote(folder)}", f"printf '%s' {shquote(function_spec_text(job.task))} > {shquote(spec)}",
                  write_entry_line(posixpath.join(folder, ENTRY_FILE))]  # fmt: skip
    lines.append(f"exec {shjoin(argv)}")
    script = "\n".join(lines)
    size = len(script.encode())
    if size > MAX_SCRIPT_BYTES:
        data = job.package.archive_data
        what = f"with the code archive ({len(data)} bytes, {len(base64.b64encode(data))} in base64) " if data else ""
        fix = ("ship fewer files (packager include_pattern/subpath), or put the code in the image or on executor.mounts "
               "and use packager=none") if data else "shorten pre_launch_commands or the function task's params"  # fmt: skip
        raise ConfigError(f"the Lepton job's command {what}is {size} bytes, over the {MAX_SCRIPT_BYTES} Linux allows for "
                          f"one argument (MAX_ARG_STRLEN); {fix}")  # fmt: skip
    return ["/bin/bash", "-c", script]


def _envs(job: Job) -> list[dict[str, Any]]:
    for name, value in job.env.items():
        size = len(f"{name}={value}".encode())
        if size > MAX_SCRIPT_BYTES:
            raise ConfigError(f"environment variable {name} is {size} bytes (NAME=value), over the {MAX_SCRIPT_BYTES} Linux "
                              "allows for one environment string (MAX_ARG_STRLEN); put the value in a file on "
                              "executor.mounts (or in the image) and pass its path")  # fmt: skip
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


SCRIPT_VIEW = "the job's script (spec.container.command of job.json)"
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{76,}={0,2}")


def script_view(body: str) -> str:
    """The ``bash -c`` script of a rendered ``job.json``, as lines a person reads (in the JSON it
    is one string of ``\\n``-escaped lines); the code archive's base64 and nemorun's own entry
    point (the same bytes in every job) are shortened to their sizes."""
    command = json.loads(body)["spec"]["container"]["command"]
    script = command[2] if command[:2] == ["/bin/bash", "-c"] and len(command) == 3 else shjoin(command)
    script = script.replace(shquote(ENTRY_SOURCE), f"<the nemorun entry point: nemorun/entry.py, {len(ENTRY_SOURCE)} bytes>")
    return _BASE64_RUN.sub(lambda m: f"<code archive: {len(m.group())} base64 characters>", script)


def render(job: Job) -> Rendered:
    ex = job.executor
    body = render_template("lepton/job.json.j2", body=build_body(job))
    size = len(body.encode())
    if size > MAX_BODY_BYTES:
        raise ConfigError(f"the Lepton job body ({ARTIFACT}) is {size} bytes, over the {MAX_BODY_BYTES} nemorun sends (the "
                          "service stores it as a Kubernetes object, etcd's request limit is 1.5 MiB); move large "
                          "executor.env_vars values into files on executor.mounts or into the image")  # fmt: skip
    lookup = f" (node group '{ex.node_group}' resolved to its id at submission)" if ex.node_group and not ex.node_group_id else ""
    return Rendered(
        target="lepton",
        job_name=job.name,
        artifacts={ARTIFACT: body},
        submit_command=f"leptonai APIClient().job.create({ARTIFACT}) -> POST <workspace>/jobs{lookup}",
        views={SCRIPT_VIEW: script_view(body)},
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
