"""Backend ``kubeflow``: apply ``configmap.yaml`` and ``trainjob.yaml`` with the official ``kubernetes`` client.

Credentials: the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``, current context), else the
in-cluster service account. Objects are sent with ``fieldValidation=Strict`` so the apiserver
refuses fields it does not know instead of pruning them silently (a v2.1-style
``podTemplateOverrides`` would otherwise vanish on a v2.2+ cluster).

Tracking: state from the TrainJob's conditions (``Complete``/``Failed``/``Suspended``/``Created``)
and ``jobsStatus``; logs from the container ``node`` of the trainer pods, found by the labels
JobSet puts on every pod (``jobset.sigs.k8s.io/jobset-name`` = the TrainJob's name,
``jobset.sigs.k8s.io/replicatedjob-name=node``), as the Kubeflow SDK does. Cancel deletes the
TrainJob (Kubernetes' garbage collector removes its JobSet and pods) and its ConfigMap.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator, Optional, Sequence

from nemorun import configmap_packaging as cmp
from nemorun import secrets
from nemorun.errors import ConfigError, SubmitError, one_line
from nemorun.ir import Job, Rendered
from nemorun.states import AppState, Handle, JobStatus
from nemorun.submitters.base import SubmitterFeatures
from nemorun.targets import kubeflow as target

FEATURES = SubmitterFeatures(find=True, resolve=True)

JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
JOB_INDEX_LABEL = "jobset.sigs.k8s.io/job-index"
STRICT = "Strict"


class _Clients:
    def __init__(self, core: Any, custom: Any, host: str) -> None:
        self.core, self.custom, self.host = core, custom, host


class _NoCredentials(ConfigError):
    """Neither the kubeconfig nor an in-cluster service account gives credentials: the user's
    set-up, not the cluster, is wrong (exit 2)."""


def _clients() -> _Clients:
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError as exc:
        raise SubmitError(f"executor=kubeflow needs the kubernetes client: pip install 'kubernetes>=30,<38' ({exc})") from exc
    try:
        # KUBECONFIG is read here, not at import time as the client's own default does
        api = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG") or None)
    except Exception as kube_exc:  # noqa: BLE001 - ConfigException, OSError, a YAMLError or a KeyError from a
        # kubeconfig that is not YAML or lacks a field: whatever the client's loader raises, it is unusable
        try:
            config.load_incluster_config()
        except ConfigException:
            raise _NoCredentials(f"no Kubernetes credentials: {one_line(str(kube_exc) or type(kube_exc).__name__)} "
                                 "and not running inside a cluster (KUBECONFIG, ~/.kube/config)") from kube_exc
        api = client.ApiClient()
    _register_credentials(api.configuration)
    hook = api.configuration.refresh_api_key_hook  # exec/OIDC users: a token fetched before each request
    if hook is not None:
        api.configuration.refresh_api_key_hook = lambda c: (hook(c), _register_credentials(c))
    return _Clients(client.CoreV1Api(api), client.CustomObjectsApi(api), str(api.configuration.host))


# (experiment id, KUBECONFIG) whose credentials resolve loaded: once per launch, not per task
_checked: set[tuple[str, Optional[str]]] = set()


def resolve(job: Job) -> Job:
    """Nothing to fill in: refuses, before any job of the launch is sent, what :func:`submit`
    would refuse at its turn without asking the cluster — the kubernetes client missing, no
    usable kubeconfig or in-cluster credentials (one line, exit 2). Once per launch."""
    seen = (job.experiment_id, os.environ.get("KUBECONFIG"))
    if seen not in _checked:
        _clients()
        _checked.intersection_update({k for k in _checked if k[0] == job.experiment_id})  # this launch's only
        _checked.add(seen)
    return job


def _register_credentials(configuration: Any) -> None:
    """The kubeconfig's bearer token and password, for the scrubber (:mod:`nemorun.secrets`): an
    apiserver, proxy or webhook that quotes the request it refused must not get them into an
    error line or a record."""
    for value in (configuration.api_key or {}).values():
        secrets.register(value)
        secrets.register(str(value).partition(" ")[2])  # "Bearer <token>"
    secrets.register(configuration.password)


def _api_message(exc: Any) -> str:
    """The apiserver's own message (``Status.message``) out of an ApiException, else its reason."""
    body = getattr(exc, "body", None)
    try:
        message = json.loads(body)["message"] if body else ""
    except (TypeError, ValueError, KeyError):
        message = ""
    return one_line(str(message or body or getattr(exc, "reason", "") or exc))


def _call(clients: _Clients, what: str, fn: Any, *args: Any, ok: tuple[int, ...] = (), hint: str = "", **kwargs: Any) -> Any:
    """Run one API call; statuses in ``ok`` give None, any other refusal ONE line naming the
    resource, the server and the apiserver's message."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return fn(*args, **kwargs)
    except ApiException as exc:
        if exc.status in ok:
            return None
        code = f"{exc.status} {exc.reason}".strip()
        raise SubmitError(f"{what} on {clients.host}: {code}: {_api_message(exc)}{hint if exc.status == 404 else ''}") from exc
    except HTTPError as exc:
        raise SubmitError(f"{what}: Kubernetes API at {clients.host} unreachable: {one_line(str(exc))}") from exc


def _runtime_hint(trainjob: dict[str, Any]) -> str:
    ref = trainjob["spec"]["runtimeRef"]
    plural = "clustertrainingruntimes" if ref.get("kind", "ClusterTrainingRuntime") == "ClusterTrainingRuntime" else "trainingruntimes"
    return f" (does {ref.get('kind')} '{ref['name']}' exist? kubectl get {plural}.trainer.kubeflow.org)"


def submit(rendered: Rendered, job: Optional[Job] = None) -> Handle:
    trainjob, configmap = target.manifests(rendered)
    ns, name = trainjob["metadata"]["namespace"], trainjob["metadata"]["name"]
    if configmap is not None:  # the render checked it too; refuse before any request is sent
        cmp.check_size(configmap["metadata"]["name"], cmp.files_of(configmap))
    clients = _clients()
    cm_name = None
    if configmap is not None:
        cm_name = configmap["metadata"]["name"]
        what = f"ConfigMap {ns}/{cm_name}"
        if _call(clients, f"creating {what}", clients.core.create_namespaced_config_map, ns, configmap, field_validation=STRICT, ok=(409,)) is None:
            _call(clients, f"replacing {what}", clients.core.replace_namespaced_config_map, cm_name, ns, configmap, field_validation=STRICT)
    try:
        _call(
            clients,
            f"creating TrainJob {ns}/{name}",
            clients.custom.create_namespaced_custom_object,
            target.API_GROUP, target.API_VERSION, ns, target.PLURAL, trainjob,
            field_validation=STRICT,
            hint=_runtime_hint(trainjob),
        )  # fmt: skip
    except SubmitError:
        if cm_name:  # leave nothing behind for a job that does not exist
            _call(clients, f"deleting ConfigMap {ns}/{cm_name}", clients.core.delete_namespaced_config_map, cm_name, ns, ok=(404,))
        raise
    return Handle(backend="kubeflow", id=f"{ns}/{name}", data={"namespace": ns, "name": name, "configmap": cm_name, "host": clients.host})


def find(job: Job) -> Optional[Handle]:
    """The TrainJob a crashed launch may have created: its name (``<job>-<experiment id>``,
    from the same pure render as the submission) is unique, and Trainer keeps finished
    TrainJobs, so one GET tells. (A resubmission would be refused with 409 anyway; this lets
    ``--resume`` adopt it instead of failing.)"""
    trainjob, configmap = target.manifests(target.render(job))
    ns, name = trainjob["metadata"]["namespace"], trainjob["metadata"]["name"]
    clients = _clients()
    found = _call(
        clients, f"reading TrainJob {ns}/{name}", clients.custom.get_namespaced_custom_object,
        target.API_GROUP, target.API_VERSION, ns, target.PLURAL, name, ok=(404,),
    )  # fmt: skip
    if found is None:
        return None
    cm_name = configmap["metadata"]["name"] if configmap is not None else None
    return Handle(backend="kubeflow", id=f"{ns}/{name}", data={"namespace": ns, "name": name, "configmap": cm_name, "host": clients.host})


def state_of(trainjob: dict[str, Any]) -> JobStatus:
    """TrainJob conditions (and child-job counts) in AppState terms."""
    status = trainjob.get("status") or {}
    true = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    for kind, state, code in (("Failed", AppState.FAILED, None), ("Complete", AppState.SUCCEEDED, 0)):
        if kind in true:
            cond = true[kind]
            return JobStatus(state, code, one_line(f"{cond.get('reason', kind)}: {cond.get('message', '')}".rstrip(": ")))
    if "Suspended" in true:
        return JobStatus(AppState.PENDING, None, "Suspended")
    jobs = status.get("jobsStatus") or []
    if any((j.get("active") or 0) > 0 or (j.get("ready") or 0) > 0 for j in jobs):
        return JobStatus(AppState.RUNNING, None, "Running")
    if "Created" in true:
        return JobStatus(AppState.PENDING, None, "Created")
    return JobStatus(AppState.SUBMITTED, None, "")


def status(handles: Sequence[Handle]) -> dict[str, JobStatus]:
    if not handles:
        return {}
    clients = _clients()
    out: dict[str, JobStatus] = {}
    for h in handles:
        ns, name = h.data["namespace"], h.data["name"]
        obj = _call(
            clients, f"reading TrainJob {ns}/{name}", clients.custom.get_namespaced_custom_object,
            target.API_GROUP, target.API_VERSION, ns, target.PLURAL, name, ok=(404,),
        )  # fmt: skip
        # Trainer keeps finished TrainJobs (no TTL): one that is gone was deleted, i.e. cancelled
        out[h.id] = state_of(obj) if obj is not None else JobStatus(AppState.CANCELLED, None, "TrainJob deleted")
    return out


def _pods(clients: _Clients, ns: str, name: str) -> list[Any]:
    selector = f"{JOBSET_NAME_LABEL}={name},{REPLICATED_JOB_LABEL}={target.CONTAINER}"
    pods = _call(clients, f"listing pods of TrainJob {ns}/{name}", clients.core.list_namespaced_pod, ns, label_selector=selector)
    return sorted(pods.items, key=lambda p: (int((p.metadata.labels or {}).get(JOB_INDEX_LABEL, "0")), p.metadata.name))


def logs(handle: Handle, follow: bool = False) -> Iterator[str]:
    """The ``node`` container's output of every trainer pod, node by node (``[pod] `` prefix with several)."""
    clients = _clients()
    ns, name = handle.data["namespace"], handle.data["name"]
    pods = _pods(clients, ns, name)
    for pod in pods:
        pod_name = pod.metadata.name
        prefix = f"[{pod_name}] " if len(pods) > 1 else ""
        resp = _call(
            clients, f"reading logs of pod {ns}/{pod_name}", clients.core.read_namespaced_pod_log,
            pod_name, ns, container=target.CONTAINER, follow=follow, _preload_content=False,
        )  # fmt: skip
        try:
            pending = b""
            for chunk in resp.stream(64 * 1024):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    yield prefix + line.decode("utf-8", "replace") + "\n"
            if pending:
                yield prefix + pending.decode("utf-8", "replace")
        finally:
            resp.release_conn()


def cancel(handle: Handle) -> None:
    """Delete the TrainJob and its ConfigMap; already gone is fine."""
    clients = _clients()
    ns, name = handle.data["namespace"], handle.data["name"]
    _call(
        clients, f"deleting TrainJob {ns}/{name}", clients.custom.delete_namespaced_custom_object,
        target.API_GROUP, target.API_VERSION, ns, target.PLURAL, name,
        propagation_policy="Background", ok=(404,),
    )  # fmt: skip
    cm_name = handle.data.get("configmap")
    if cm_name:
        _call(clients, f"deleting ConfigMap {ns}/{cm_name}", clients.core.delete_namespaced_config_map, cm_name, ns, ok=(404,))
