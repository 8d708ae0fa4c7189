"""Backend ``lepton``: ``job.json`` through the leptonai 0.47 SDK (``leptonai.api.v2.client.APIClient``).

The SDK is imported inside functions (``pip install nemorun[lepton]``). The client takes its
workspace from ``lep login`` or ``LEPTON_WORKSPACE_ID`` / ``_TOKEN`` / ``_URL``; the handle keeps the
workspace id and URL, never the token. The token is registered with :mod:`nemorun.secrets` as soon
as the client holds it, so no error message, record or stderr line carries it, in any encoding
the service may echo it in.

Flow: :func:`resolve`, before rendering: node group name -> id (``nodegroup.list_all``; skipped when
``node_group_id`` is set); :func:`submit`: ``job.create`` with the recorded ``job.json`` (the SDK
runs its client-side checks and POSTs ``/jobs``); status ``job.get``; logs ``job.get_replicas`` +
``job.get_log`` per replica; cancel ``job.delete`` (404: already gone).

The SDK does not retry: 429 and 502/503/504 are retried here with backoff (``Retry-After`` when
given). Its errors carry the whole HTTP reply; they become one line with the service's ``message``.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

from nemorun import secrets
from nemorun.errors import SubmitError, one_line
from nemorun.ir import Job, Rendered
from nemorun.states import AppState, Handle, JobStatus
from nemorun.submitters.base import SubmitterFeatures
from nemorun.targets.lepton import ARTIFACT, has_placeholder, job_id, with_node_group_id

FEATURES = SubmitterFeatures(resolve=True, find=True)

T = TypeVar("T")
RETRY_STATUS = frozenset({429, 502, 503, 504})
ATTEMPTS = 5
BACKOFF_SECONDS = 1.0
MAX_WAIT_SECONDS = 30.0

# leptonai.api.v2.types.job.LeptonJobState -> AppState
STATE_MAP: dict[str, AppState] = {
    "Starting": AppState.PENDING,
    "Queueing": AppState.PENDING,
    "Awaiting": AppState.PENDING,
    "PendingRetry": AppState.PENDING,
    "Restarting": AppState.PENDING,
    "Running": AppState.RUNNING,
    "Completed": AppState.SUCCEEDED,
    "Failed": AppState.FAILED,
    "Stopping": AppState.CANCELLED,
    "Stopped": AppState.CANCELLED,
    "Deleting": AppState.CANCELLED,
    "Deleted": AppState.CANCELLED,
    "Terminating": AppState.CANCELLED,
}


def _client(workspace_id: Optional[str] = None, url: Optional[str] = None) -> Any:
    _sdk_present()
    from leptonai.api.v2.client import APIClient

    # the token as the SDK will find it (alone, or after the colon of an "id:token" credential),
    # registered before the SDK can fail with a message that quotes it
    credential = workspace_id or os.environ.get("LEPTON_WORKSPACE_ID") or ""
    secrets.register(os.environ.get("LEPTON_WORKSPACE_TOKEN"))
    secrets.register(credential.partition(":")[2])
    try:
        client = APIClient(workspace_id=workspace_id, url=url)
    except Exception as exc:  # WorkspaceConfigurationError and friends: no workspace configured
        raise SubmitError(f"lepton: no workspace: {_first_line(exc)}") from None
    secrets.register(client.auth_token)
    return client


def _first_line(exc: BaseException) -> str:
    return secrets.scrub((str(exc).strip().splitlines() or [type(exc).__name__])[0])


def _service_message(exc: BaseException) -> tuple[Optional[int], str]:
    """(HTTP status, the service's own message) of an SDK error; the body's ``message`` when JSON."""
    response = getattr(exc, "response", None)
    if response is None:
        return None, _first_line(exc)
    try:
        body = response.json()
        text = body.get("message") or body.get("error") or json.dumps(body) if isinstance(body, dict) else response.text
    except ValueError:
        text = response.text
    return int(response.status_code), one_line(" ".join(str(text).split()))


def _call(what: str, client: Any, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One SDK call with retries on 429/5xx; any failure becomes one SubmitError line."""
    import requests

    for attempt in range(1, ATTEMPTS + 1):
        try:
            return fn(*args, **kwargs)
        except requests.RequestException as exc:
            raise SubmitError(f"lepton workspace {client.url} is unreachable ({what}): {_first_line(exc)}") from None
        except Exception as exc:  # the SDK's ClientError/ServerError/WorkspaceError carry the reply
            code, message = _service_message(exc)
            if code in RETRY_STATUS and attempt < ATTEMPTS:
                time.sleep(_retry_wait(exc, attempt))
                continue
            if code == 401:
                raise SubmitError(f"lepton workspace {client.url}: authentication failed (401) {what}: {message}") from None
            status = f" ({code})" if code else ""
            raise SubmitError(f"lepton workspace {client.url} refused {what}{status}: {message}") from None
    raise AssertionError("unreachable")


def _retry_wait(exc: BaseException, attempt: int) -> float:
    header = getattr(getattr(exc, "response", None), "headers", {}).get("Retry-After")
    try:
        wait = float(header) if header is not None else BACKOFF_SECONDS * 2 ** (attempt - 1)
    except ValueError:
        wait = BACKOFF_SECONDS * 2 ** (attempt - 1)
    return max(0.0, min(wait, MAX_WAIT_SECONDS))


@dataclass(frozen=True)
class NodeGroups:
    """A workspace's dedicated node groups as listed for one launch."""

    launch: tuple[str, str, str]  # experiment id, LEPTON_WORKSPACE_ID, LEPTON_WORKSPACE_URL
    url: str
    groups: tuple[tuple[str, str], ...]  # (id, name)

    def id_of(self, name: str) -> str:
        """The id of the group named (or with the id) ``name``."""
        for group_id, group_name in self.groups:
            if name in (group_id, group_name):
                return group_id
        known = ", ".join(sorted(f"{n} ({i})" for i, n in self.groups)) or "none"
        raise SubmitError(f"lepton workspace {self.url} has no node group '{name}'; available: {known}")


_listed: Optional[NodeGroups] = None


def node_groups(job: Job) -> NodeGroups:
    """The node groups of the workspace ``job`` is sent to, listed ONCE per launch (its experiment
    id) and workspace: every job of an N-job sweep is resolved before the first is sent, and
    listing per job made N identical calls. A later launch lists again (groups come and go)."""
    global _listed
    launch = (job.experiment_id, os.environ.get("LEPTON_WORKSPACE_ID", ""), os.environ.get("LEPTON_WORKSPACE_URL", ""))
    if _listed is None or _listed.launch != launch:
        client = _client()
        found = _call("listing node groups", client, client.nodegroup.list_all)
        _listed = NodeGroups(launch, str(client.url), tuple((str(g.metadata.id_), str(g.metadata.name)) for g in found))
    return _listed


def resolve(job: Job) -> Job:
    """The job with ``node_group_id`` looked up by the ``node_group`` name (``nodegroup.list_all``),
    so the rendered body names the id; a job that names the id (or no group) is returned as it is."""
    ex = job.executor
    if not ex.node_group or ex.node_group_id:
        _sdk_present()  # what submit would find missing at this job's turn, found before anything is sent
        return job
    return with_node_group_id(job, node_groups(job).id_of(ex.node_group))


def _sdk_present() -> None:
    try:
        import leptonai.api.v2.client  # noqa: F401
    except ImportError:
        raise SubmitError("the lepton executor needs the leptonai SDK: install nemorun[lepton]") from None


def submit(rendered: Rendered, job: Job) -> Handle:
    """``job.create`` with the recorded ``job.json`` as it is (the SDK's model of it dumps to the
    same JSON: tests pin that); a body still holding a node group placeholder is refused first."""
    body: dict[str, Any] = json.loads(rendered.artifacts[ARTIFACT])
    if has_placeholder(body):
        raise SubmitError(f"{ARTIFACT} still holds a node group placeholder: it was rendered without looking the id up (resolve)")
    client = _client()
    from leptonai.api.v2.types.job import LeptonJob  # the SDK is installed: _client checked

    try:
        spec = LeptonJob.model_validate(body)
    except ValueError as exc:
        raise SubmitError(f"{ARTIFACT} does not fit leptonai's LeptonJob: {_first_line(exc)}") from None
    created = _call(f"job {body['metadata']['id']}", client, client.job.create, spec)
    job_id = str(created.metadata.id_ or body["metadata"]["id"])
    return Handle(backend="lepton", id=job_id, data={"workspace_id": client.workspace_id, "url": client.url})


def find(job: Job) -> Optional[Handle]:
    """The job a crashed launch may have created: nemorun names it (``metadata.id``, from the
    experiment id and job name), so one ``job.get`` tells; 404 means it was never created."""
    client = _client()
    name = job_id(job)
    try:
        found = _call(f"looking for job {name}", client, client.job.get, name)
    except SubmitError as exc:
        if _is_not_found(exc):
            return None
        raise
    return Handle(backend="lepton", id=str(found.metadata.id_ or name), data={"workspace_id": client.workspace_id, "url": client.url})


def _handle_client(handle: Handle) -> Any:
    return _client(handle.data.get("workspace_id"), handle.data.get("url"))


def _is_not_found(exc: SubmitError) -> bool:
    return "(404)" in str(exc)


def status(handles: Sequence[Handle]) -> dict[str, JobStatus]:
    out: dict[str, JobStatus] = {}
    for handle in handles:
        client = _handle_client(handle)
        try:
            job = _call(f"status of job {handle.id}", client, client.job.get, handle.id)
        except SubmitError as exc:
            if not _is_not_found(exc):
                raise
            out[handle.id] = JobStatus(AppState.UNKNOWN, None, "not found in the workspace")
            continue
        native = job.status.state.value if job.status and job.status.state else "UNK"
        out[handle.id] = JobStatus(STATE_MAP.get(native, AppState.UNKNOWN), None, native)
    return out


def logs(handle: Handle, follow: bool = False) -> Iterator[str]:
    """Each replica's log, in replica order. ``follow`` keeps the stream open until the service ends it."""
    client = _handle_client(handle)
    replicas = _call(f"replicas of job {handle.id}", client, client.job.get_replicas, handle.id)
    for replica in replicas:
        chunks = _call(f"log of job {handle.id}", client, lambda r=replica: list(client.job.get_log(handle.id, r, timeout=None if follow else 30)))
        partial = ""
        for chunk in chunks:
            *lines, partial = (partial + chunk).split("\n")
            yield from (line + "\n" for line in lines)
        if partial:
            yield partial


def cancel(handle: Handle) -> None:
    client = _handle_client(handle)
    try:
        _call(f"deleting job {handle.id}", client, client.job.delete, handle.id)
    except SubmitError as exc:
        if not _is_not_found(exc):
            raise
