"""Backend ``skypilot``: ``task.yaml`` through the SkyPilot 0.14 SDK (``pip install nemorun[skypilot]``).

SkyPilot 0.14's SDK is a client of the SkyPilot API server (local or remote): every call returns a
request id, and ``sky.stream_and_get`` / ``sky.get`` wait for its result. ``import sky`` takes
seconds, so it happens inside these functions only.

- cluster mode: ``sky.launch(task, cluster_name=..., idle_minutes_to_autostop=..., down=...)``
  (reuses a running cluster of that name); handle ``<cluster>/<job id>``; status from
  ``sky.queue(cluster)``; logs ``sky.tail_logs``; cancel ``sky.cancel(cluster, job_ids=[id])``.
- managed mode (``managed=true``): ``sky.jobs.launch(task, name=<managed name>)``; handle
  ``managed/<job id>``; ``sky.jobs.queue`` / ``sky.jobs.tail_logs`` / ``sky.jobs.cancel``.
- crash-safe resume (:func:`find`): a launch that reached the API server left a request there
  (the server keeps finished requests for a day or more), and a job that started left a record
  in the cluster's queue / the jobs controller. A launch request still in flight is adopted as a
  *request handle* ``<cluster>/request/<request id>``, which status/logs/cancel follow to the job
  once the request has succeeded.

The task is built with ``sky.Task.from_yaml_config`` from the recorded ``task.yaml``: what is
submitted is what was rendered. Packaged code: before launching, :func:`unpack_code` unpacks the
recorded archive into the workdir the render named (``<record job dir>/code``); the SkyPilot
client then uploads that folder like any workdir. :func:`launch_call` and friends return the SDK function name and
its keyword arguments, so tests bind them to the real SDK signatures without a server.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import urllib.parse
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import yaml

from nemorun import secrets
from nemorun.archives import extract_beside, file_sha256
from nemorun.errors import ConfigError, SubmitError
from nemorun.ir import Job, Rendered
from nemorun.states import AppState, Handle, JobStatus
from nemorun.submitters.base import SubmitterFeatures
from nemorun.targets.skypilot import CODE_DIR, cluster_name, managed_job_name

FEATURES = SubmitterFeatures(find=True, resolve=True)

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
    _register_credentials(sky)
    return sky


def _register_credentials(sky: Any) -> None:
    """The API server's basic-auth password (``http://user:password@host``) and service-account
    token, for the scrubber (:mod:`nemorun.secrets`): SkyPilot quotes the server URL whole in its
    own errors (``Could not connect to ... at http://user:password@...``)."""
    try:
        password = urllib.parse.urlparse(str(sky.server.common.get_server_url())).password
        from sky.client import service_account_auth

        headers = service_account_auth.get_service_account_headers()
    except Exception:  # noqa: BLE001 - an SDK without these helpers: nothing more to register
        return
    for value in (password, urllib.parse.unquote(password or ""), *headers.values()):
        secrets.register(value)
        secrets.register(str(value or "").partition(" ")[2])  # "Bearer <token>"


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


# (experiment id, API server URL) that resolve found answering: once per launch, not per task
_checked: set[tuple[str, str]] = set()


def resolve(job: Job) -> Job:
    """Nothing to fill in: refuses, before any job of the launch is sent, what :func:`submit`
    would refuse at its turn — the SDK missing, the API server not answering (exit 1, as every
    backend that cannot be reached), its credentials refused (exit 2). The check is the SDK's
    own before any request (a local server it may start is started here rather than at the first
    job's turn). Once per launch and server."""
    sky = _sky()
    seen = (job.experiment_id, _server(sky))
    if seen in _checked:
        return job
    try:
        sky.server.common.check_server_healthy_or_start_fn()
    except Exception as exc:  # noqa: BLE001 - ApiServerConnectionError, APIVersionMismatchError, RuntimeError...
        what = f"SkyPilot API server {_server(sky)}: {type(exc).__name__}: {_first_line(exc)}"
        if type(exc).__name__ == "ApiServerAuthenticationError":
            raise ConfigError(f"{what} (sky api login)") from None
        raise SubmitError(what) from None
    _checked.intersection_update({k for k in _checked if k[0] == job.experiment_id})  # this launch's only
    _checked.add(seen)
    return job


def _server(sky: Any) -> str:
    try:
        return str(sky.server.common.get_server_url())
    except Exception:
        return "(unknown)"


def launch_call(job: Job) -> tuple[str, dict[str, Any]]:
    """SDK function (relative to ``sky``) and keyword arguments that launch ``job``'s task."""
    ex = job.executor
    if ex.managed:
        return "jobs.launch", {"name": managed_job_name(job)}
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
        found = file_sha256(pkg.archive)
    except OSError as exc:
        raise SubmitError(f"job {job.name}: cannot read its code archive {pkg.archive}: {exc.strerror or exc}") from None
    if found != pkg.sha256:
        raise SubmitError(f"job {job.name}: code archive {pkg.archive} has sha256 {found}, not the planned {pkg.sha256}")
    tmp = None
    try:
        tmp = extract_beside(pkg.archive, dest)
        if not (tmp / SKYIGNORE).exists():
            (tmp / SKYIGNORE).write_text("")
        stamp.unlink(missing_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except (OSError, tarfile.TarError) as exc:
        if tmp is not None:
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


def _job_handle(cluster: str, job_id: Any) -> Handle:
    return Handle(backend="skypilot", id=f"{cluster}/{job_id}", data={"cluster": cluster, "job_id": int(job_id)})


# the API server's names of the two launch requests, and the statuses of one not finished yet
REQUEST_NAMES = {"launch": "sky.launch", "jobs.launch": "sky.jobs.launch"}
IN_FLIGHT = frozenset({"PENDING", "WAITING", "RUNNING"})


def _request_handle(cluster: str, request_id: str) -> Handle:
    return Handle(backend="skypilot", id=f"{cluster}/request/{request_id}", data={"cluster": cluster, "request_id": request_id})


def _request_error(request: Any) -> str:
    """``Type: first line`` of a failed request's error (the server keeps it as JSON)."""
    try:
        err = json.loads(request.error) if isinstance(request.error, str) else request.error
    except ValueError:
        err = None
    if not isinstance(err, dict):
        return _ANSI.sub("", str(request.error or "")).strip() or request.status
    message = (_ANSI.sub("", str(err.get("message") or "")).strip().splitlines() or [""])[0]
    return f"{err.get('type') or 'Error'}: {message}".rstrip(": ")


def _requests(sky: Any, **kwargs: Any) -> list[Any]:
    try:
        return list(sky.api_status(**kwargs))
    except Exception as exc:
        raise SubmitError(f"SkyPilot API server {_server(sky)}: listing requests failed: {type(exc).__name__}: {_first_line(exc)}") from None


def _launched_job_id(sky: Any, request_id: str) -> Optional[int]:
    """The job id a SUCCEEDED launch request returned (``jobs.launch``: a list, one per task)."""
    try:
        job_id, _resource_handle = sky.get(request_id)
    except Exception as exc:
        raise SubmitError(f"SkyPilot API server {_server(sky)}: reading launch request {request_id} failed: {_first_line(exc)}") from None
    if isinstance(job_id, list):
        job_id = job_id[0] if job_id else None
    return None if job_id is None else int(job_id)


def _launch_requests(sky: Any, job: Job) -> list[Any]:
    """The launch requests the server holds for ``job``, newest first. Cluster mode: ``sky.launch``
    requests on the job's cluster whose task is named like the job (the cluster is per experiment
    unless configured); managed mode: ``sky.jobs.launch`` requests with the job's managed name,
    which carries the experiment id."""
    dotted, kwargs = launch_call(job)
    managed = job.executor.managed
    listed = _requests(sky, all_status=True, **({} if managed else {"cluster_name": kwargs["cluster_name"]}))
    out = []
    for r in listed:
        if r.name != REQUEST_NAMES[dotted]:
            continue
        try:
            body = json.loads(r.request_body)
        except ValueError:
            continue
        if managed:
            if body.get("name") == kwargs["name"]:
                out.append(r)
        elif body.get("cluster_name") == kwargs["cluster_name"] and _task_name(body.get("task")) == job.name:
            out.append(r)
    return sorted(out, key=lambda r: r.created_at, reverse=True)


def _task_name(dag_yaml: Any) -> Optional[str]:
    """The task's name in a launch request's body (a multi-document DAG YAML)."""
    try:
        docs = [d for d in yaml.safe_load_all(str(dag_yaml or "")) if isinstance(d, dict)]
    except yaml.YAMLError:
        return None
    tasks = [d for d in docs if "run" in d or "resources" in d] or docs
    return str(tasks[-1].get("name")) if tasks and tasks[-1].get("name") is not None else None


def _queued(sky: Any, job: Job) -> Optional[Handle]:
    """A job the cluster's queue (or the jobs controller) lists under the job's (managed) name:
    the trace a launch leaves once its request is gone from the server."""
    dotted, kwargs = launch_call(job)
    if job.executor.managed:
        name = kwargs["name"]
        try:
            got = _run(sky, f"jobs.queue_v2 for {name}", "jobs.queue_v2", gone_ok=True, refresh=False, skip_finished=False,
                       all_users=True, name_match=name)  # fmt: skip
        except _Gone:
            return None
        records = got[0] if isinstance(got, tuple) else got
        ids = sorted({int(r.job_id) for r in records if r.job_name == name and r.job_id is not None})
        cluster = MANAGED
    else:
        cluster = kwargs["cluster_name"]
        try:
            records = _run(sky, f"queue on {cluster}", "queue", gone_ok=True, cluster_name=cluster, skip_finished=False, all_users=True)
        except _Gone:
            return None
        ids = sorted({int(r.job_id) for r in records if r.job_name == job.name and r.job_id is not None})
    if len(ids) > 1:
        raise SubmitError(f"SkyPilot API server {_server(sky)}: {len(ids)} jobs named {kwargs.get('name', job.name)} on {cluster} "
                          f"({', '.join(map(str, ids))}); cancel the extra ones")  # fmt: skip
    return _job_handle(cluster, ids[0]) if ids else None


def find(job: Job) -> Optional[Handle]:
    """The job a crashed launch may have started, or its launch request still under way.

    Asked in this order: the newest launch request the server kept for this job (in flight:
    adopted as a request handle; succeeded: the job id it returned), then the cluster's queue /
    the jobs controller by name (the request may have been garbage-collected). A launch whose
    request FAILED or was CANCELLED created nothing to run (SkyPilot fails a launch whose job
    did not get queued), so with no job in the queue either, None: submitting again is right."""
    sky = _sky()
    cluster = MANAGED if job.executor.managed else cluster_name(job)
    for request in _launch_requests(sky, job):
        if request.status in IN_FLIGHT:
            return _request_handle(cluster, request.request_id)
        if request.status == "SUCCEEDED":
            job_id = _launched_job_id(sky, request.request_id)
            if job_id is not None:
                return _job_handle(cluster, job_id)
    return _queued(sky, job)


def _follow_requests(sky: Any, handles: Sequence[Handle]) -> tuple[dict[str, JobStatus], dict[str, Handle]]:
    """Request handles: the status of those whose launch has not produced a job (yet, or ever),
    and the job handle of those whose launch request succeeded."""
    if not handles:
        return {}, {}
    listed = {r.request_id: r for r in _requests(sky, request_ids=[h.data["request_id"] for h in handles], all_status=True)}
    statuses: dict[str, JobStatus] = {}
    jobs: dict[str, Handle] = {}
    for h in handles:
        r = listed.get(h.data["request_id"])
        if r is None:
            statuses[h.id] = JobStatus(AppState.UNKNOWN, None, "launch request no longer on the API server")
        elif r.status in IN_FLIGHT:
            statuses[h.id] = JobStatus(AppState.PENDING, None, f"launch request {r.status}")
        elif r.status == "SUCCEEDED" and (job_id := _launched_job_id(sky, r.request_id)) is not None:
            jobs[h.id] = _job_handle(str(h.data["cluster"]), job_id)
        elif r.status == "CANCELLED":
            statuses[h.id] = JobStatus(AppState.CANCELLED, None, "launch request cancelled")
        else:
            statuses[h.id] = JobStatus(AppState.FAILED, None, f"launch failed: {_request_error(r)}")
    return statuses, jobs


def status(handles: Sequence[Handle]) -> dict[str, JobStatus]:
    sky = _sky()
    requested, launched = _follow_requests(sky, [h for h in handles if "request_id" in h.data])
    handles = [launched.get(h.id, h) for h in handles if h.id not in requested]
    back = {job.id: adopted for adopted, job in launched.items()}
    out = dict(requested)
    out.update({back.get(k, k): v for k, v in _job_status(sky, handles).items()})
    return out


def _job_status(sky: Any, handles: Sequence[Handle]) -> dict[str, JobStatus]:
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


def _as_job(sky: Any, handle: Handle) -> tuple[Handle, Optional[JobStatus]]:
    """A request handle's job handle once its launch succeeded; else the handle and why it has no job."""
    if "request_id" not in handle.data:
        return handle, None
    requested, launched = _follow_requests(sky, [handle])
    return launched.get(handle.id, handle), requested.get(handle.id)


def logs(handle: Handle, follow: bool = False) -> Iterator[str]:
    """Checks the job is known first: the streaming call (``preload_content=False``) ends silently,
    with no lines and no error, for a cluster or managed job that does not exist."""
    sky = _sky()
    handle, no_job = _as_job(sky, handle)
    if no_job is not None:
        raise SubmitError(f"SkyPilot API server {_server(sky)}: no logs for {handle.id}: no job yet: {no_job.detail}")
    known = status([handle])[handle.id]
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
    """Idempotent: a job that has ended, or whose cluster or controller is gone, is left alone.
    A launch request still in flight is cancelled on the API server (nothing runs yet)."""
    sky = _sky()
    handle, no_job = _as_job(sky, handle)
    if no_job is not None:
        if no_job.state is AppState.PENDING:
            _run(sky, f"cancelling launch request {handle.data['request_id']}", "api_cancel", handle.data["request_id"])
        return
    state = status([handle])[handle.id].state
    if state.is_terminal or state is AppState.UNKNOWN:
        return
    cluster, job_id = _split(handle)
    dotted, kwargs = cancel_call(cluster, job_id)
    _run(_sky(), f"{dotted} of {handle.id}", dotted, **kwargs)
