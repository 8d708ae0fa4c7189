"""Target ``docker``: one detached container per job on a Docker engine.

Artifact: ``container.json`` — exactly the keyword arguments the submitter passes to docker-py's
``client.containers.run(**kwargs)`` (``image`` and ``command`` included), so the dry run shows what
is sent. Only set options appear. Options: :class:`nemorun.schemas.docker.DockerExecutorConfig`.

- ``command``: the task under its launcher (``launchers.wrap(..., "docker")``) as an argv, no
  shell in between; a shell (``executor.shell``, default ``bash``; ``sh`` for busybox-like images)
  runs inline tasks, non-Python scripts, and commands with words the shell must expand.
- Code: with a packager, the submitter places the unpacked archive at ``<job dir>/code`` on the
  engine's machine (a link to the tree unpacked once per digest), bound read-only at
  ``/nemorun/code`` (the working directory unless ``working_dir`` is set). Function tasks also get
  the job folder read-only at ``/nemorun/job``: ``function.yaml`` and the entry point shipped with
  it (``nemorun_entry.py``), so any image with Python 3.9+ runs them; nemorun need not be in the
  image. Bind sources are paths on this machine: the engine must run here (a remote
  ``DOCKER_HOST`` does not see them).
- ``num_gpus``: a device request in docker-py's dict form (``DeviceRequest(**d)``), count ``-1`` =
  all GPUs, capability ``gpu`` (what ``docker run --gpus`` sends).
- ``retries``: restart policy ``on-failure`` with ``MaximumRetryCount``: the engine runs the same
  container again after a non-zero exit (same writable layer; the code mount is read-only).
- ``network``: rendered as ``network_mode`` (HostConfig only; docker-py's ``network`` keyword also
  sends an ``{"<net>": null}`` NetworkingConfig that is not in the Engine API schema).
- Labels ``nemorun.experiment-id``, ``nemorun.experiment-name``, ``nemorun.job`` (over the user's):
  status and listing find containers by label. The container name is ``nemorun-<job>-<experiment id>``.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from nemorun import launchers
from nemorun.capabilities import ARCHIVE_PACKAGERS, Capabilities, Evidence
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
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]+")
_ULIMIT = re.compile(r"^(-?\d+)(?::(-?\d+))?$")
_BIND_MODES = frozenset({"ro", "rw", "z", "Z", "ro,z", "ro,Z", "rw,z", "rw,Z"})

CAPABILITIES = Capabilities(
    executor="docker",
    packagers=("none", *ARCHIVE_PACKAGERS),
    retries="restart policy on-failure with MaximumRetryCount",
    evidence=Evidence(retries=('"MaximumRetryCount": {n}',), code=("{job_dir}/code:/nemorun/code:ro",)),
)


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
    gpus = job.resources.gpus_per_node or 0
    if gpus < -1:
        raise ConfigError(f"executor.num_gpus={gpus}: use -1 (all), 0 (none) or a count")
    if gpus == -1 and job.launcher.kind != "none" and job.launcher.options.get("nproc_per_node") is None:
        raise ConfigError(
            f"executor.num_gpus=-1 (all GPUs) does not say how many processes launcher={job.launcher.kind} starts; "
            "set launcher.nproc_per_node"
        )


def run_kwargs(job: Job) -> dict[str, Any]:
    """The ``containers.run`` keyword arguments, in a fixed, readable order."""
    ex, gpus = job.executor, job.resources.gpus_per_node
    _check_gpus(job)
    volumes = [m.colon_form() for m in job.mounts]
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
        "image": job.image,
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
        "shm_size": job.resources.shm_size,
        "runtime": ex.runtime,
        "device_requests": [{"count": int(gpus), "capabilities": [["gpu"]]}] if gpus else None,
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


@dataclass(frozen=True)
class RunKwarg:
    """One keyword argument of docker-py 7's ``containers.run``, as JSON can carry it.

    ``types``: the JSON types docker-py accepts for it (``bool`` never counts as ``int``);
    ``memory``: a byte size, an int or a number with a ``b``/``k``/``m``/``g`` suffix (docker-py's
    ``parse_bytes``); ``items``: the type of each element of a list value.
    """

    types: tuple[type, ...]
    memory: bool = False
    items: Optional[type] = None


_S, _I, _B, _L, _D = RunKwarg((str,)), RunKwarg((int,)), RunKwarg((bool,)), RunKwarg((list,)), RunKwarg((dict,))
_STRS, _DICTS = RunKwarg((list,), items=str), RunKwarg((list,), items=dict)
_MEMORY = RunKwarg((int, float, str), memory=True)
# Every keyword ``containers.run`` takes (docker-py 7.1): RUN_CREATE_KWARGS + RUN_HOST_CONFIG_KWARGS
# of docker.models.containers, and the ones run()/create() handle themselves (_RUN_ONLY). Ours,
# not docker-py's (whose conversion is private API), so a dry run needs no SDK; a test compares
# the names with docker-py's public lists when docker-py is installed.
RUN_KWARGS: Mapping[str, RunKwarg] = {
    # container config (RUN_CREATE_KWARGS)
    "command": RunKwarg((str, list)), "detach": _B, "domainname": RunKwarg((str, list)),
    "entrypoint": RunKwarg((str, list)), "environment": RunKwarg((dict, list)), "healthcheck": _D,
    "hostname": _S, "image": _S, "labels": RunKwarg((dict, list)), "mac_address": _S, "name": _S,
    "network_disabled": _B, "platform": _S, "stdin_open": _B, "stop_signal": _S, "tty": _B,
    "use_config_proxy": _B, "user": RunKwarg((str, int)), "working_dir": _S,
    # host config (RUN_HOST_CONFIG_KWARGS, less ``version``: docker-py sets it from the client)
    "auto_remove": _B, "blkio_weight_device": _DICTS, "blkio_weight": _I, "cap_add": _STRS, "cap_drop": _STRS,
    "cgroup_parent": _S, "cgroupns": _S, "cpu_count": _I, "cpu_percent": _I, "cpu_period": _I, "cpu_quota": _I,
    "cpu_shares": _I, "cpuset_cpus": _S, "cpuset_mems": _S, "cpu_rt_period": _I, "cpu_rt_runtime": _I,
    "device_cgroup_rules": _STRS, "device_read_bps": _DICTS, "device_read_iops": _DICTS,
    "device_write_bps": _DICTS, "device_write_iops": _DICTS, "devices": _STRS, "device_requests": _DICTS,
    "dns_opt": _STRS, "dns_search": _STRS, "dns": _STRS, "extra_hosts": RunKwarg((dict, list)), "group_add": RunKwarg((list,)),
    "init": _B, "init_path": _S, "ipc_mode": _S, "isolation": _S, "kernel_memory": _MEMORY,
    "links": RunKwarg((dict, list)), "log_config": _D, "lxc_conf": _D, "mem_limit": _MEMORY, "mem_reservation": _MEMORY,
    "mem_swappiness": _I, "memswap_limit": _MEMORY, "mounts": RunKwarg((list,)), "nano_cpus": _I, "network_mode": _S,
    "oom_kill_disable": _B, "oom_score_adj": _I, "pid_mode": _S, "pids_limit": _I, "privileged": _B,
    "publish_all_ports": _B, "read_only": _B, "restart_policy": _D, "security_opt": _STRS, "shm_size": _MEMORY,
    "storage_opt": _D, "sysctls": _D, "tmpfs": RunKwarg((dict, list)), "ulimits": _DICTS, "userns_mode": _S,
    "uts_mode": _S, "volume_driver": _S, "volumes_from": _STRS, "runtime": _S,
    # handled by run()/create() themselves (_RUN_ONLY)
    "ports": _D, "volumes": RunKwarg((list, dict)), "network": _S, "networking_config": _D,
    "remove": _B, "stdout": _B, "stderr": _B, "stream": _B,
}  # fmt: skip
_RUN_ONLY = frozenset({"ports", "volumes", "network", "networking_config", "remove", "stdout", "stderr", "stream"})
# what docker-py sets itself: passing it would be overridden silently
SET_BY_DOCKER_PY = frozenset({"version"})
_MEMORY_SIZE = re.compile(r"^\d+(\.\d+)?[bkmgBKMG]?[bB]?$")
_RESTART_NAMES = frozenset({"", "no", "always", "unless-stopped", "on-failure"})
# the keys docker.types.Ulimit / DeviceRequest read (either spelling)
_ULIMIT_KEYS = frozenset({"name", "soft", "hard", "Name", "Soft", "Hard"})
_DEVICE_REQUEST_KEYS = frozenset(
    {"driver", "count", "device_ids", "capabilities", "options", "Driver", "Count", "DeviceIDs", "Capabilities", "Options"}
)


def _json_type(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(type(value), type(value).__name__)


def _is(value: Any, types: tuple[type, ...]) -> bool:
    """JSON's types as docker-py checks them: a bool is not an int."""
    return any(type(value) is t for t in types)


def _memory_ok(value: Any) -> bool:
    """docker-py's ``parse_bytes``: a number, or digits with an optional unit (``b`` after a unit
    letter allowed: ``16gb``)."""
    return type(value) in (int, float) or bool(_MEMORY_SIZE.match(str(value)))


def _shape_problems(key: str, value: Any) -> list[str]:
    """What docker-py's own types (Ulimit, DeviceRequest) or the engine refuse in structured values."""
    problems = []
    if key == "restart_policy":
        if set(value) - {"Name", "MaximumRetryCount"} or str(value.get("Name", "")) not in _RESTART_NAMES:
            problems.append(f"restart_policy={value!r} is not {{'Name': no|always|unless-stopped|on-failure, 'MaximumRetryCount': n}}")
        elif "MaximumRetryCount" in value and type(value["MaximumRetryCount"]) is not int:
            problems.append("restart_policy.MaximumRetryCount must be an integer")
    elif key == "ulimits":
        for u in value:
            if set(u) - _ULIMIT_KEYS or not isinstance(u.get("name", u.get("Name")), str) or not all(
                type(u.get(k, u.get(k.title()))) in (int, type(None)) for k in ("soft", "hard")
            ):
                problems.append(f"ulimit {u!r} is not {{name: str, soft: int, hard: int}}")
    elif key == "device_requests":
        for d in value:
            if set(d) - _DEVICE_REQUEST_KEYS:
                problems.append(f"device request {d!r} has keys docker.types.DeviceRequest does not read: {sorted(set(d) - _DEVICE_REQUEST_KEYS)}")
            elif type(d.get("count", d.get("Count", 0))) is not int or not isinstance(d.get("capabilities", d.get("Capabilities", [])), list):
                problems.append(f"device request {d!r}: count must be an integer and capabilities a list")
    return problems


def run_kwargs_problems(kwargs: Mapping[str, Any]) -> list[str]:
    """What ``containers.run(**kwargs)`` would refuse before sending anything (docker-py 7)."""
    problems = []
    for key, value in kwargs.items():
        spec = RUN_KWARGS.get(key)
        if spec is None:
            why = " (docker-py sets it)" if key in SET_BY_DOCKER_PY else ""
            problems.append(f"containers.run() got an unexpected keyword argument '{key}'{why}")
            continue
        if value is None:
            continue  # docker-py treats None as unset
        if not _is(value, spec.types):
            expected = " or ".join(t.__name__ for t in spec.types)
            problems.append(f"{key} must be {expected}, not {_json_type(value)} ({value!r})")
        elif spec.memory and not _memory_ok(value):
            problems.append(f"{key}={value!r}: a memory size is a number with the unit b, k, m or g (e.g. 16g)")
        elif spec.items is not None and not all(type(v) is spec.items for v in value):
            problems.append(f"{key} must be a list of {spec.items.__name__}")
        else:
            problems.extend(_shape_problems(key, value))
    if kwargs.get("network") and kwargs.get("network_mode"):
        problems.append("network and network_mode cannot be used together")
    if kwargs.get("networking_config") and not kwargs.get("network"):
        problems.append("networking_config needs network")
    return problems


def validate(rendered: Rendered) -> None:
    """``containers.run`` must accept the kwargs: names, JSON types and units checked against
    nemorun's own table of docker-py 7's keywords, so no SDK is needed (a dry run imports none)."""
    kwargs = parse_mapping_artifact(ARTIFACT, rendered.artifacts[ARTIFACT], "json")
    problems = run_kwargs_problems(kwargs)
    if isinstance(kwargs.get("volumes"), list):
        problems += _volume_problems([str(v) for v in kwargs["volumes"]])
    if kwargs.get("detach") is not True or not isinstance(kwargs.get("image"), str):
        problems.append("it must name an image and run detached")
    if problems:
        raise ArtifactError(f"{ARTIFACT}: {'; '.join(problems)}")
