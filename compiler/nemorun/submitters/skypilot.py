"""Backend ``skypilot``: ``task.yaml`` through the SkyPilot 0.14 SDK (``pip install nemorun[skypilot]``).

SkyPilot 0.14's SDK is a client of the SkyPilot API server (local or remote): every call returns a
request id, and ``sky.stream_and_get`` / ``sky.get`` wait for its result. ``import sky`` takes
seconds, so it happens inside these functions only.

- cluster mode: ``sky.launch(task, cluster_name=..., idle_minutes_to_autostop=..., down=...)``
  (reuses a running cluster of that name); handle ``<cluster>/<job id>``; status from
  ``sky.queue(cluster)``; logs ``sky.tail_logs``; cancel ``sky.cancel(cluster, job_ids=[id])``.
- managed mode (``managed=true``): ``sky.jobs.launch(task, name=...)``; handle ``managed/<job id>``;
  ``sky.jobs.queue`` / ``sky.jobs.tail_logs`` / ``sky.jobs.cancel``.

The task is built with ``sky.Task.from_yaml_config`` from the recorded ``task.yaml``: what is
submitted is what was rendered. Packaged code: before launching, :func:`unpack_code` unpacks the
recorded archive into the workdir the render named (``<record job dir>/code``); the SkyPilot
client then uploads that folder like any workdir. :func:`launch_call` and friends return the SDK function name and
its keyword arguments, so tests bind them to the real SDK signatures without a server.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import yaml

from nemorun.errors import SubmitError
from nemorun.ir import Job, Rendered
from nemorun.states import AppState, Handle, JobStatus
from nemorun.submitters.base import SubmitterFeatures
from nemorun.targets.skypilot import CODE_DIR, cluster_name

FEATURES = SubmitterFeatures()

# sky.skylet.job_lib.JobStatus and sky.jobs.state.ManagedJobStatus names -> AppState
STATE_MAP: dict[str, AppState] = {
    "INIT": AppState.PENDING,
    "PENDING": AppState.PENDING,
    "SUBMITTED": AppState.PENDING,
    "STARTING": AppState.PENDING,
    "SETTING_UP": AppState.PENDING,
    "RECOVERING": AppState.PENDING,
    "RUNNING": AppState.RUNNING,
    "WINDING_DOWN": AppState.RUNNING,
    "CANCELLING": AppState.RUNNING,
    "SUCCEEDED": AppState.SUCCEEDED,
    "CANCELLED": AppState.CANCELLED,
    "FAILED": AppState.FAILED,
    "FAILED_DRIVER": AppState.FAILED,
    "FAILED_SETUP": AppState.FAILED,
    "FAILED_PRECHECKS": AppState.FAILED,
    "FAILED_NO_RESOURCE": AppState.FAILED,
    "FAILED_CONTROLLER": AppState.FAILED,
}
MANAGED = "managed"
# what the API server answers for a cluster, or a jobs controller, that is not there (any more):
# its jobs are then UNKNOWN, not an error (a cluster torn down by down=true is the common case)
_GONE = ("ClusterDoesNotExist", "ClusterNotUpError")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _sky() -> Any:
    try:
        import sky
    except ImportError:
        raise SubmitError("the skypilot executor needs the SkyPilot SDK: install nemorun[skypilot]") from None
    return sky


def _fn(sky: Any, dotted: str) -> Any:
    obj = sky
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _first_line(exc: BaseException) -> str:
    """The message without SkyPilot's colour codes (its errors carry them even off a terminal)."""
    return (_ANSI.sub("", str(exc)).strip().splitlines() or [type(exc).__name__])[0]


class _Gone(Exception):
    """The cluster or jobs controller a request named does not exist or is not up."""


def _run(sky: Any, what: str, dotted: str, *args: Any, gone_ok: bool = False, **kwargs: Any) -> Any:
    """Call one SDK function and wait for its API-server request; errors become one line
    (``gone_ok``: a missing cluster or controller raises :class:`_Gone` instead)."""
    try:
        request_id = _fn(sky, dotted)(*args, **kwargs)
        return sky.stream_and_get(request_id) if dotted.endswith("launch") else sky.get(request_id)
    except SubmitError:
        raise
    except Exception as exc:  # ApiServerConnectionError, NoCloudAccessError, ResourcesUnavailableError...
        if gone_ok and type(exc).__name__ in _GONE:
            raise _Gone(_first_line(exc)) from None
        raise SubmitError(f"SkyPilot API server {_server(sky)}: {what} failed: {type(exc).__name__}: {_first_line(exc)}") from None


def _server(sky: Any) -> str:
    try:
        return str(sky.server.common.get_server_url())
    except Exception:
        return "(unknown)"


def launch_call(job: Job) -> tuple[str, dict[str, Any]]:
    """SDK function (relative to ``sky``) and keyword arguments that launch ``job``'s task."""
    ex = job.executor
    if ex.managed:
        return "jobs.launch", {"name": job.name}
    return "launch", {"cluster_name": cluster_name(job), "idle_minutes_to_autostop": ex.idle_minutes_to_autostop, "down": ex.down}


def status_call(cluster: str, job_ids: Sequence[int]) -> tuple[str, dict[str, Any]]:
    if cluster == MANAGED:
        # version=2: version 1 logs a deprecation warning on every call
        return "jobs.queue", {"refresh": False, "skip_finished": False, "all_users": True, "job_ids": list(job_ids), "version": 2}
    return "queue", {"cluster_name": cluster, "skip_finished": False, "all_users": True}


def cancel_call(cluster: str, job_id: int) -> tuple[str, dict[str, Any]]:
    if cluster == MANAGED:
        return "jobs.cancel", {"job_ids": [job_id]}
    return "cancel", {"cluster_name": cluster, "job_ids": [job_id]}


def logs_call(cluster: str, job_id: int, follow: bool) -> tuple[str, dict[str, Any]]:
    if cluster == MANAGED:
        return "jobs.tail_logs", {"job_id": job_id, "follow": follow, "preload_content": False}
    return "tail_logs", {"cluster_name": cluster, "job_id": job_id, "follow": follow, "preload_content": False}


def task_from(sky: Any, rendered: Rendered) -> Any:
    config = yaml.safe_load(rendered.artifacts["task.yaml"])
    try:
        return sky.Task.from_yaml_config(config)
    except Exception as exc:
        raise SubmitError(f"SkyPilot rejected task.yaml: {_first_line(exc)}") from None


# next to the unpacked folder (not in it: everything in it is synced to the nodes)
CODE_STAMP = ".code.sha256"
SKYIGNORE = ".skyignore"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unpack_code(job: Job) -> Optional[Path]:
    """Unpack the job's archive into ``<record job dir>/code`` (the task's workdir), unless it
    is already there with the same digest (a resumed launch). None when nothing is shipped.

    The archive's digest is checked first: the record is what was planned, and code that changed
    since would run under the planned digest. Unpacking goes to a temporary folder renamed into
    place, so a half-unpacked folder is never synced. Unless the archive brings its own
    ``.skyignore``, an empty one is added: the packager already chose the files, and without it
    SkyPilot would drop whatever the folder's ``.gitignore`` names."""
    pkg = job.package
    if not pkg.archive:
        return None
    dest, stamp = Path(job.job_dir, CODE_DIR), Path(job.job_dir, CODE_STAMP)
    if dest.is_dir() and stamp.is_file() and stamp.read_text().strip() == pkg.sha256:
        return dest
    try:
        found = _sha256(pkg.archive)
    except OSError as exc:
        raise SubmitError(f"job {job.name}: cannot read its code archive {pkg.archive}: {exc.strerror or exc}") from None
    if found != pkg.sha256:
        raise SubmitError(f"job {job.name}: code archive {pkg.archive} has sha256 {found}, not the planned {pkg.sha256}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".code-", dir=dest.parent))
    try:
        with tarfile.open(pkg.archive, mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
        if not (tmp / SKYIGNORE).exists():
            (tmp / SKYIGNORE).write_text("")
        stamp.unlink(missing_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SubmitError(f"job {job.name}: unpacking {pkg.archive} into {dest} failed: {exc}") from None
    stamp.write_text(f"{pkg.sha256}\n")
    return dest


def submit(rendered: Rendered, job: Job) -> Handle:
    sky = _sky()
    unpack_code(job)
    task = task_from(sky, rendered)
    dotted, kwargs = launch_call(job)
    job_id, _resource_handle = _run(sky, f"{dotted} of {job.name}", dotted, task, **kwargs)
    if isinstance(job_id, list):  # jobs.launch returns a list (one id per task group member)
        job_id = job_id[0] if job_id else None
    if job_id is None:
        raise SubmitError(f"SkyPilot API server {_server(sky)}: {dotted} of {job.name} returned no job id")
    cluster = MANAGED if job.executor.managed else kwargs["cluster_name"]
    return Handle(backend="skypilot", id=f"{cluster}/{job_id}", data={"cluster": cluster, "job_id": int(job_id)})


def _split(handle: Handle) -> tuple[str, int]:
    return str(handle.data["cluster"]), int(handle.data["job_id"])


def status(handles: Sequence[Handle]) -> dict[str, JobStatus]:
    sky = _sky()
    by_cluster: dict[str, list[Handle]] = {}
    for h in handles:
        by_cluster.setdefault(_split(h)[0], []).append(h)
    out: dict[str, JobStatus] = {}
    for cluster, group in by_cluster.items():
        dotted, kwargs = status_call(cluster, [_split(h)[1] for h in group])
        try:
            records = _run(sky, f"{dotted} on {cluster}", dotted, gone_ok=True, **kwargs)
        except _Gone as gone:
            out.update({h.id: JobStatus(AppState.UNKNOWN, None, str(gone)) for h in group})
            continue
        if isinstance(records, tuple):  # jobs.queue(version=2) shape: (records, total, ...)
            records = records[0]
        seen: Mapping[int, Any] = {int(r.job_id): r.status for r in records if r.job_id is not None}
        for h in group:
            native = seen.get(_split(h)[1])
            name = getattr(native, "value", None) or (str(native) if native is not None else "")
            out[h.id] = JobStatus(STATE_MAP.get(name, AppState.UNKNOWN), None, name or "not in the queue")
    return out


def logs(handle: Handle, follow: bool = False) -> Iterator[str]:
    """Checks the job is known first: the streaming call (``preload_content=False``) ends silently,
    with no lines and no error, for a cluster or managed job that does not exist."""
    known = status([handle])[handle.id]
    sky = _sky()
    if known.state is AppState.UNKNOWN:
        raise SubmitError(f"SkyPilot API server {_server(sky)}: no logs for {handle.id}: {known.detail}")
    cluster, job_id = _split(handle)
    dotted, kwargs = logs_call(cluster, job_id, follow)
    try:
        for line in _fn(sky, dotted)(**kwargs):
            if line is not None:
                yield line
    except Exception as exc:
        raise SubmitError(f"SkyPilot API server {_server(sky)}: logs of {handle.id} failed: {_first_line(exc)}") from None


def cancel(handle: Handle) -> None:
    """Idempotent: a job that has ended, or whose cluster or controller is gone, is left alone."""
    state = status([handle])[handle.id].state
    if state.is_terminal or state is AppState.UNKNOWN:
        return
    cluster, job_id = _split(handle)
    dotted, kwargs = cancel_call(cluster, job_id)
    _run(_sky(), f"{dotted} of {handle.id}", dotted, **kwargs)
