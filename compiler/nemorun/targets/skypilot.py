"""Target ``skypilot``: a SkyPilot task.

Artifact: ``task.yaml`` — a SkyPilot 0.14 task (``sky launch task.yaml`` reads the same file):
``name``, ``workdir``, ``num_nodes``, ``resources`` (``infra`` or ``cloud/region/zone``,
``accelerators: NAME:N``, ``cpus``, ``memory``, ``disk_size``, ``use_spot``,
``image_id: docker:<image>``), ``envs``, ``file_mounts``, ``setup`` and ``run``.
Options: :class:`nemorun.schemas.skypilot.SkypilotExecutorConfig`.

``run`` is a bash script: the launcher's rendezvous lines (head node from ``$SKYPILOT_NODE_IPS``)
and, for a function task, a line that writes its spec on the node (nothing else ships files),
then the command. Cluster options (``cluster_name``, autostop, ``down``, ``managed``) are not part
of a task YAML; they are arguments of ``sky.launch`` / ``sky.jobs.launch``, shown in the submit
command and applied by the submitter.
"""
from __future__ import annotations

import re
from typing import Any


from nemorun.capabilities import Capabilities
from nemorun.command import REMOTE_FUNCTION_SPEC, task_argv, write_function_spec_line
from nemorun.errors import ArtifactError
from nemorun.ir import Job, Rendered
from nemorun.launchers import setup_lines, wrap
from nemorun.render import render_template, shjoin, shquote
from nemorun.validate import parse_mapping_artifact

ARTIFACT = "task.yaml"
# SkyPilot cluster names: a letter, then letters, digits, '-', '_', '.'; short enough for every cloud
MAX_CLUSTER_NAME = 40
# top-level keys of sky/utils/schemas.py::get_task_schema() (0.14.1) that this target writes
_TASK_KEYS = frozenset({"name", "workdir", "num_nodes", "resources", "envs", "file_mounts", "setup", "run"})

CAPABILITIES = Capabilities(
    executor="skypilot",
    # only executor.workdir (synced by SkyPilot itself) reaches the nodes; no archive is unpacked
    packagers=("none",),
    retries=None,
    no_retries_why="the task it renders sets no recovery or restart policy",
)


def cluster_name(job: Job) -> str:
    """The cluster to launch on: the configured one, else one per experiment (same id, same name)."""
    if job.executor.cluster_name:
        return str(job.executor.cluster_name)
    base = re.sub(r"[^a-z0-9-]+", "-", job.experiment_name.lower()).strip("-") or "job"
    tail = job.experiment_id.rsplit("-", 1)[-1].lower()
    return f"nemorun-{base[: MAX_CLUSTER_NAME - len(tail) - 9].rstrip('-')}-{tail}"


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
    return res


def run_script(job: Job) -> str:
    argv = wrap(job, task_argv(job, REMOTE_FUNCTION_SPEC), form="skypilot")
    lines = ["set -euo pipefail", *setup_lines(job, "skypilot")]
    if job.task.kind == "function":
        lines.append(write_function_spec_line(job.task))
    lines.append(shjoin(argv))
    return "\n".join(lines) + "\n"


def task_config(job: Job) -> dict[str, Any]:
    """The task as SkyPilot's ``Task.from_yaml_config`` takes it (also what ``task.yaml`` holds)."""
    ex = job.executor
    task: dict[str, Any] = {"name": job.name}
    if ex.workdir:
        task["workdir"] = ex.workdir
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
        return f"sky jobs launch --name {shquote(job.name)} {ARTIFACT}"
    words = ["sky", "launch", "--cluster", cluster_name(job)]
    if ex.idle_minutes_to_autostop is not None:
        words += ["--idle-minutes-to-autostop", str(ex.idle_minutes_to_autostop)]
    if ex.down:
        words.append("--down")
    return f"{shjoin(words)} {ARTIFACT}"


def render(job: Job) -> Rendered:
    text = render_template("skypilot/task.yaml.j2", job=job, task=task_config(job))
    return Rendered(target="skypilot", job_name=job.name, artifacts={ARTIFACT: text}, submit_command=submit_command(job))


def validate(rendered: Rendered) -> None:
    """The YAML reads back as a task mapping with known keys; tests check SkyPilot's full schemas."""
    task = parse_mapping_artifact(ARTIFACT, rendered.artifacts[ARTIFACT], "yaml")
    unknown = sorted(set(task) - _TASK_KEYS)
    if unknown:
        raise ArtifactError(f"{ARTIFACT}: keys SkyPilot's task schema does not have: {', '.join(unknown)}")
    if not isinstance(task.get("run"), str) or not task["run"].strip():
        raise ArtifactError(f"{ARTIFACT}: run must be a non-empty script")
