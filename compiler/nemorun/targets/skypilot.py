"""Target ``skypilot``: a SkyPilot task.

Artifact: ``task.yaml`` — a SkyPilot 0.14 task (``sky launch task.yaml`` reads the same file):
``name``, ``workdir``, ``num_nodes``, ``resources`` (``infra`` or ``cloud/region/zone``,
``accelerators: NAME:N``, ``cpus``, ``memory``, ``disk_size``, ``use_spot``,
``image_id: docker:<image>``), ``envs``, ``file_mounts``, ``setup`` and ``run``.
Options: :class:`nemorun.schemas.skypilot.SkypilotExecutorConfig`.

``run`` is a bash script: the launcher's rendezvous lines (head node from ``$SKYPILOT_NODE_IPS``)
and, for a function task, lines that write its spec and the entry point on the node, then the
command. Cluster options (``cluster_name``, autostop, ``down``, ``managed``) are not part of a
task YAML; they are arguments of ``sky.launch`` / ``sky.jobs.launch``, shown in the submit
command and applied by the submitter.

Packaged code (git/pattern/hybrid) ships the way SkyPilot ships any code: as the task's
``workdir``, which the SkyPilot client uploads (to a remote API server, then to the nodes) and
``run`` starts in. The workdir is ``<record job dir>/code``, where the submitter unpacks the
archive before launching (:func:`code_dir`); the render only names it, so it stays pure.

Retries are SkyPilot's own: a managed job's ``resources.job_recovery.max_restarts_on_errors``
(the jobs controller relaunches a job whose run failed). A job on a cluster has no restarter,
so the schema refuses retries without ``managed=true``.
"""
from __future__ import annotations

import posixpath
import re
from typing import Any, Optional

from nemorun.capabilities import ARCHIVE_PACKAGERS, Capabilities, Evidence
from nemorun.command import REMOTE_FUNCTION_SPEC, task_argv, write_function_spec_lines
from nemorun.errors import ArtifactError, ConfigError
from nemorun.ir import Job, Rendered
from nemorun.launchers import setup_lines, wrap
from nemorun.render import render_template, shjoin, shquote
from nemorun.validate import parse_mapping_artifact

ARTIFACT = "task.yaml"
# the archive is unpacked here, in the job's record folder; SkyPilot syncs it as the workdir
CODE_DIR = "code"
# SkyPilot cluster names: a letter, then letters, digits, '-', '_', '.'; short enough for every cloud
MAX_CLUSTER_NAME = 40
# top-level keys of sky/utils/schemas.py::get_task_schema() (0.14.1) that this target writes
_TASK_KEYS = frozenset({"name", "workdir", "num_nodes", "resources", "envs", "file_mounts", "setup", "run"})

CAPABILITIES = Capabilities(
    executor="skypilot",
    # the unpacked archive is the task's workdir (SkyPilot uploads and syncs it)
    packagers=("none", *ARCHIVE_PACKAGERS),
    retries="managed jobs (executor.managed=true): resources.job_recovery.max_restarts_on_errors",
    evidence=Evidence(retries=("max_restarts_on_errors: {n}",), code=("sha256 {sha256}", "workdir: {job_dir}/code")),
)


def cluster_name(job: Job) -> str:
    """The cluster to launch on: the configured one, else one per experiment (same id, same name)."""
    if job.executor.cluster_name:
        return str(job.executor.cluster_name)
    base = re.sub(r"[^a-z0-9-]+", "-", job.experiment_name.lower()).strip("-") or "job"
    tail = job.experiment_id.rsplit("-", 1)[-1].lower()
    return f"nemorun-{base[: MAX_CLUSTER_NAME - len(tail) - 9].rstrip('-')}-{tail}"


def managed_job_name(job: Job) -> str:
    """The managed job's name: ``<job>-<experiment id>``. The jobs controller is shared by every
    experiment, so the id is what lets a resumed launch find (by name) the job a crashed one
    submitted, and not another experiment's job of the same name."""
    return f"{job.name}-{job.experiment_id.lower()}"


def resources(job: Job) -> dict[str, Any]:
    ex, asked = job.executor, job.resources
    res: dict[str, Any] = {}
    if ex.infra:
        res["infra"] = ex.infra
    for key in ("cloud", "region", "zone"):
        if getattr(ex, key):
            res[key] = getattr(ex, key)
    if asked.gpu_type:
        res["accelerators"] = f"{asked.gpu_type}:{asked.gpus_per_node}"
    for key, value in (("cpus", asked.cpus), ("memory", asked.mem), ("disk_size", ex.disk_size)):
        if value is not None:
            res[key] = value
    if ex.use_spot:
        res["use_spot"] = True
    if job.image:
        res["image_id"] = f"docker:{job.image}"
    if job.retries > 0:  # the schema allows retries only with managed=true
        res["job_recovery"] = {"max_restarts_on_errors": job.retries}
    return res


def code_dir(job: Job) -> Optional[str]:
    """The task's workdir when an archive is shipped: ``<record job dir>/code`` (+ the archive's
    working subfolder), where the submitter unpacks it; None when nothing is shipped."""
    if not job.package.archive:
        return None
    return posixpath.join(str(job.job_dir), CODE_DIR, job.package.workdir_subpath).rstrip("/")


def _workdir(job: Job) -> Optional[str]:
    ex = job.executor
    shipped = code_dir(job)
    if shipped and ex.workdir:
        raise ConfigError(f"executor.workdir={ex.workdir} and packager={job.package.kind} both set the SkyPilot task's workdir "
                          f"(the packaged code is synced as the workdir); drop executor.workdir or use packager=none")  # fmt: skip
    return shipped or ex.workdir


def run_script(job: Job) -> str:
    argv = wrap(job, task_argv(job, REMOTE_FUNCTION_SPEC), form="skypilot")
    lines = ["set -euo pipefail", *setup_lines(job, "skypilot")]
    if job.task.kind == "function":
        lines.extend(write_function_spec_lines(job.task))
    lines.append(shjoin(argv))
    return "\n".join(lines) + "\n"


def task_config(job: Job) -> dict[str, Any]:
    """The task as SkyPilot's ``Task.from_yaml_config`` takes it (also what ``task.yaml`` holds)."""
    ex = job.executor
    task: dict[str, Any] = {"name": job.name}
    workdir = _workdir(job)
    if workdir:
        task["workdir"] = workdir
    task["num_nodes"] = job.resources.nodes
    task["resources"] = resources(job)
    if job.env:
        task["envs"] = dict(sorted(job.env.items()))
    if job.mounts:
        task["file_mounts"] = dict(sorted((str(m.target), m.source) for m in job.mounts))
    if ex.setup:
        task["setup"] = ex.setup if ex.setup.endswith("\n") else ex.setup + "\n"
    task["run"] = run_script(job)
    return task


def submit_command(job: Job) -> str:
    ex = job.executor
    if ex.managed:
        return f"sky jobs launch --name {shquote(managed_job_name(job))} {ARTIFACT}"
    words = ["sky", "launch", "--cluster", cluster_name(job)]
    if ex.idle_minutes_to_autostop is not None:
        words += ["--idle-minutes-to-autostop", str(ex.idle_minutes_to_autostop)]
    if ex.down:
        words.append("--down")
    return f"{shjoin(words)} {ARTIFACT}"


def render(job: Job) -> Rendered:
    text = render_template("skypilot/task.yaml.j2", job=job, task=task_config(job), code_dir=code_dir(job))
    return Rendered(target="skypilot", job_name=job.name, artifacts={ARTIFACT: text}, submit_command=submit_command(job))


def validate(rendered: Rendered) -> None:
    """The YAML reads back as a task mapping with known keys; tests check SkyPilot's full schemas."""
    task = parse_mapping_artifact(ARTIFACT, rendered.artifacts[ARTIFACT], "yaml")
    unknown = sorted(set(task) - _TASK_KEYS)
    if unknown:
        raise ArtifactError(f"{ARTIFACT}: keys SkyPilot's task schema does not have: {', '.join(unknown)}")
    if not isinstance(task.get("run"), str) or not task["run"].strip():
        raise ArtifactError(f"{ARTIFACT}: run must be a non-empty script")
