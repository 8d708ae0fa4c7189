"""Target ``docker``: one detached container per job on a Docker engine.

Artifact: ``container.json`` — exactly the keyword arguments the submitter passes to docker-py's
``client.containers.run(**kwargs)`` (``image`` and ``command`` included), so the dry run shows what
is sent. Only set options appear. Options: :class:`nemorun.schemas.docker.DockerExecutorConfig`.

- ``command``: the task under its launcher (``launchers.wrap(..., "docker")``) as an argv, no
  shell in between; a shell (``executor.shell``, default ``bash``; ``sh`` for busybox-like images)
  runs inline tasks, non-Python scripts, and commands with words the shell must expand.
- Code: with a packager, the submitter unpacks the archive into ``<job dir>/code`` on the engine's
  machine, bound read-only at ``/nemorun/code`` (the working directory unless ``working_dir`` is
  set). Function tasks also get the job folder read-only at ``/nemorun/job`` for ``function.yaml``;
  their image needs Python with nemorun importable. Bind sources are paths on this machine: the
  engine must run here (a remote ``DOCKER_HOST`` does not see them).
- ``num_gpus``: a device request in docker-py's dict form (``DeviceRequest(**d)``), count ``-1`` =
  all GPUs, capability ``gpu`` (what ``docker run --gpus`` sends).
- ``retries``: restart policy ``on-failure`` with ``MaximumRetryCount``.
- ``network``: rendered as ``network_mode`` (HostConfig only; docker-py's ``network`` keyword also
  sends an ``{"<net>": null}`` NetworkingConfig that is not in the Engine API schema).
- Labels ``nemorun.experiment-id``, ``nemorun.experiment-name``, ``nemorun.job`` (over the user's):
  status and listing find containers by label. The container name is ``nemorun-<job>-<experiment id>``.
"""
from __future__ import annotations

import posixpath
import re
from typing import Any

from nemorun import launchers
from nemorun.command import FUNCTION_SPEC, function_artifacts, task_argv
from nemorun.errors import ArtifactError, ConfigError
from nemorun.ir import Job, Rendered
from nemorun.render import Raw, render_template, shjoin
from nemorun.validate import parse_mapping_artifact

ARTIFACT = "container.json"
CODE_DIR = "code"
CODE_MOUNT = "/nemorun/code"
JOB_MOUNT = "/nemorun/job"
LABEL_EXPERIMENT_ID = "nemorun.experiment-id"
LABEL_EXPERIMENT_NAME = "nemorun.experiment-name"
LABEL_JOB = "nemorun.job"
# the Engine API version whose schema the offline check builds against (docker-py 7's default)
API_VERSION = "1.45"
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]+")
_ULIMIT = re.compile(r"^(-?\d+)(?::(-?\d+))?$")
_BIND_MODES = frozenset({"ro", "rw", "z", "Z", "ro,z", "ro,Z", "rw,z", "rw,Z"})


def container_name(job: Job) -> str:
    return _NAME_BAD.sub("-", f"nemorun-{job.name}-{job.experiment_id}")


def command(job: Job) -> list[str]:
    shell = str(job.executor.shell)
    argv = launchers.wrap(job, task_argv(job, posixpath.join(JOB_MOUNT, FUNCTION_SPEC), shell=shell), "docker")
    if any(isinstance(word, Raw) for word in argv):
        return [shell, "-c", f"exec {shjoin(argv)}"]
    return [str(word) for word in argv]


def ulimit(name: str, limits: str) -> dict[str, Any]:
    """``nofile``, ``1024:65536`` -> docker-py's ``Ulimit(**d)`` dict form."""
    m = _ULIMIT.match(limits.strip())
    if not m or not name.isalpha():
        raise ConfigError(f"executor.ulimits.{name}={limits!r}: expected a limit name and 'soft[:hard]' (e.g. memlock: -1, nofile: 1024:65536)")
    soft = int(m.group(1))
    return {"name": name, "soft": soft, "hard": int(m.group(2)) if m.group(2) is not None else soft}


def _check_gpus(job: Job) -> None:
    if job.executor.num_gpus < -1:
        raise ConfigError(f"executor.num_gpus={job.executor.num_gpus}: use -1 (all), 0 (none) or a count")
    if job.executor.num_gpus == -1 and job.launcher.kind != "none" and job.launcher.options.get("nproc_per_node") is None:
        raise ConfigError(
            f"executor.num_gpus=-1 (all GPUs) does not say how many processes launcher={job.launcher.kind} starts; "
            "set launcher.nproc_per_node"
        )


def run_kwargs(job: Job) -> dict[str, Any]:
    """The ``containers.run`` keyword arguments, in a fixed, readable order."""
    ex = job.executor
    _check_gpus(job)
    volumes = [str(v) for v in ex.volumes]
    working_dir = ex.working_dir
    if job.package.archive:
        volumes.append(f"{posixpath.join(job.job_dir, CODE_DIR)}:{CODE_MOUNT}:ro")
        working_dir = working_dir or posixpath.normpath(posixpath.join(CODE_MOUNT, job.package.workdir_subpath))
    if job.task.kind == "function":
        volumes.append(f"{job.job_dir}:{JOB_MOUNT}:ro")
    labels = {
        **{str(k): str(v) for k, v in ex.labels.items()},
        LABEL_EXPERIMENT_ID: job.experiment_id,
        LABEL_EXPERIMENT_NAME: job.experiment_name,
        LABEL_JOB: job.name,
    }
    kw: dict[str, Any] = {
        "image": ex.container_image,
        "command": command(job),
        "name": container_name(job),
        "detach": True,
        "labels": labels,
    }
    optional: dict[str, Any] = {
        "environment": dict(sorted(job.env.items())) or None,
        "working_dir": working_dir,
        "user": ex.user,
        "volumes": volumes or None,
        "network_mode": ex.network,
        "ipc_mode": ex.ipc_mode,
        "shm_size": ex.shm_size,
        "runtime": ex.runtime,
        "device_requests": [{"count": int(ex.num_gpus), "capabilities": [["gpu"]]}] if ex.num_gpus else None,
        "ulimits": [ulimit(str(k), str(v)) for k, v in sorted(ex.ulimits.items())] or None,
        "restart_policy": {"Name": "on-failure", "MaximumRetryCount": job.retries} if job.retries else None,
    }
    kw.update({k: v for k, v in optional.items() if v is not None})
    return kw


def render(job: Job) -> Rendered:
    text = render_template("docker/container.json.j2", kwargs=run_kwargs(job))
    return Rendered(
        target="docker",
        job_name=job.name,
        artifacts={ARTIFACT: text, **function_artifacts(job)},
        submit_command=f"docker.from_env().containers.run(**{ARTIFACT})  # DOCKER_HOST or the local socket",
    )


def _volume_problems(volumes: list[str]) -> list[str]:
    problems = []
    for v in volumes:
        parts = v.split(":")
        if len(parts) not in (2, 3) or not all(parts[:2]) or not parts[1].startswith("/") or (len(parts) == 3 and parts[2] not in _BIND_MODES):
            problems.append(f"volume {v!r} is not 'host_path_or_volume:/container/path[:ro|rw]'")
    return problems


def offline_create_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``POST /containers/create`` body docker-py builds from ``kwargs``, without an engine.

    Uses the route of ``ContainerCollection.create`` (private ``_create_container_args``: pin
    docker-py < 8); an explicit API version keeps ``APIClient`` from contacting any daemon.
    Raises what docker-py raises (TypeError on an unknown keyword, DockerException on bad units).
    """
    import docker
    from docker.models.containers import _create_container_args

    api = docker.APIClient(base_url="unix:///nonexistent/docker.sock", version=API_VERSION)
    try:
        kw = dict(kwargs, version=API_VERSION)
        kw.setdefault("command", None)
        create_kwargs = _create_container_args(kw)
        create_kwargs.pop("name", None)
        create_kwargs.pop("platform", None)
        return dict(api.create_container_config(**create_kwargs))
    finally:
        api.close()


def validate(rendered: Rendered) -> None:
    """docker-py must accept the kwargs (the check ``containers.run`` does before sending)."""
    kwargs = parse_mapping_artifact(ARTIFACT, rendered.artifacts[ARTIFACT], "json")
    problems = _volume_problems([str(v) for v in kwargs.get("volumes", [])])
    if kwargs.get("detach") is not True or "image" not in kwargs:
        problems.append("it must name an image and run detached")
    if problems:
        raise ArtifactError(f"{ARTIFACT}: {'; '.join(problems)}")
    try:
        import docker.errors
    except ImportError:
        raise ArtifactError(f"cannot check {ARTIFACT}: docker-py is not installed (pip install 'docker>=7,<8')") from None
    try:
        offline_create_body(kwargs)
    except (TypeError, ValueError, docker.errors.DockerException) as exc:
        raise ArtifactError(f"{ARTIFACT}: docker-py rejects it: {type(exc).__name__}: {exc}") from exc
