"""executor=dgxcloud against a local Run:ai API on 127.0.0.1 (tests/dgxcloud_runai_server.py).

No real Run:ai can be reached from here. The local server ENFORCES the Run:ai 2.24 OpenAPI
contract: it validates every request (operation, and body in strict mode) with
``tests.contracts.runai_request_errors``, answers as the service does, and fails the test at
teardown if any request violated the contract. Switches inject an expired token (401), a 429
with Retry-After, 5xx, and a 4xx carrying the service's JSON message.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from nemorun.lower import Site
from nemorun.errors import SubmitError
from nemorun.launching import launch_composed
from nemorun.states import AppState, Handle
from nemorun.store import ExperimentRecord
from nemorun.submitters import dgxcloud as submitter
from nemorun.targets import dgxcloud as target
from tests.contracts import runai_errors
from tests.dgxcloud_runai_server import RunaiServer
from tests.helpers import compose_config, run_cli

if TYPE_CHECKING:
    from nemorun.ir import Job

APP_ID, SECRET = "nemorun-ci", "s3cr3t-Value-42"
CLUSTER = "71f69d83-ba66-4822-adf5-55ce55efd210"
PROJECTS = [
    {"id": "4501", "name": "team-a", "clusterId": CLUSTER},
    {"id": "4502", "name": "team-b", "clusterId": "0b6d1b3c-3d4e-4f5a-9b7c-8d9e0f1a2b3c"},
]


@pytest.fixture
def runai() -> Iterator[RunaiServer]:
    with RunaiServer(APP_ID, SECRET, PROJECTS) as server:
        yield server
        assert server.state.violations == [], "requests that break the Run:ai 2.24 contract"


def overrides(server: RunaiServer, *extra: str) -> list[str]:
    return [
        "executor=dgxcloud",
        f"executor.base_url={server.base_url}",
        f"executor.app_id={APP_ID}",
        "executor.app_secret=${oc.env:DGX_APP_SECRET}",
        "executor.project_name=team-a",
        "executor.container_image=nvcr.io/nvidia/nemo:25.04",
        "task=hello",
        *extra,
    ]


def only_experiment(home: Path) -> ExperimentRecord:
    dirs = [p.parent for p in home.glob("experiments/*/*/experiment.json")]
    assert len(dirs) == 1, dirs
    return ExperimentRecord(dirs[0])


def files_containing(root: Path, text: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def launch(server: RunaiServer, home: Path, *extra: str) -> ExperimentRecord:
    """The CLI's pipeline in-process (compose → compile → render → record → submit)."""
    args = overrides(server, *extra)
    site = Site(experiment_id=f"exp-{len(list(home.glob('experiments/*/*')))}", submit_dir=str(home), home=str(home))
    result = launch_composed(compose_config(args), args, site=site, out=io.StringIO())
    assert result.record is not None
    return result.record


def handle_of(record: ExperimentRecord, job: str = "hello") -> Handle:
    handle = record.job(job).handle_obj()
    assert handle is not None
    return handle


def test_cli_submit_then_status_and_cancel(
    runai: RunaiServer, cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli_env["DGX_APP_SECRET"] = SECRET
    monkeypatch.setenv("DGX_APP_SECRET", SECRET)  # for status/cancel in this process
    render_dir = tmp_path / "render"
    proc = run_cli(overrides(runai, "executor.nodes=2", "executor.gpus_per_node=8", f"render_dir={render_dir}"), env=cli_env)
    assert proc.returncode == 0, proc.stderr

    sent = runai.calls("POST", "/workloads/distributed")
    assert len(sent) == 1
    record = only_experiment(nemorun_home)
    recorded = (record.job_dir("hello") / target.ARTIFACT).read_bytes()
    assert recorded == sent[0], "the record must hold exactly the bytes that were sent"
    body = json.loads(recorded)
    assert (body["projectId"], body["clusterId"]) == ("4501", CLUSTER)
    assert runai_errors(body, "DistributedCreationRequest") == []
    assert target.has_placeholders(json.loads((render_dir / target.ARTIFACT).read_text()))

    handle = handle_of(record)
    assert handle.id in runai.state.workloads and handle.id in proc.stdout
    assert handle.data["secret"] == {"interpolation": "${oc.env:DGX_APP_SECRET}"}
    assert "${oc.env:DGX_APP_SECRET}" in (record.path / "config.yaml").read_text()

    # status and cancel from "another process": only the handle and the environment
    seen = [submitter.status([handle])[handle.id].state for _ in range(3)]
    assert seen == [AppState.PENDING, AppState.PENDING, AppState.RUNNING]
    submitter.cancel(handle)
    assert len(runai.calls("POST", f"/workloads/distributed/{handle.id}/suspend")) == 1
    status = submitter.status([handle])[handle.id]
    assert (status.state, status.detail) == (AppState.CANCELLED, "Stopped")
    submitter.cancel(handle)  # idempotent: already stopped, no second suspend
    assert len(runai.calls("POST", f"/workloads/distributed/{handle.id}/suspend")) == 1

    for root in (nemorun_home, render_dir):
        assert files_containing(root, SECRET) == []
    assert SECRET not in proc.stdout + proc.stderr


def test_cli_bad_secret_is_one_line_and_recorded(runai: RunaiServer, cli_env: dict[str, str], nemorun_home: Path) -> None:
    cli_env["DGX_APP_SECRET"] = "wrong-secret-xyz"
    proc = run_cli(overrides(runai), env=cli_env)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nemorun: error: job hello was not submitted: DGX Cloud 127.0.0.1:")
    assert f"authentication of app '{APP_ID}' failed: HTTP 400: invalid client credentials" in proc.stderr
    assert "wrong-secret-xyz" not in proc.stderr + proc.stdout
    job = only_experiment(nemorun_home).job("hello")
    assert job.phase == "failed-to-submit" and "authentication" in (job.error or "")
    assert files_containing(nemorun_home, "wrong-secret-xyz") == []
    assert runai.calls("POST", "/workloads/trainings") == []


def test_unset_secret_variable_is_one_line(runai: RunaiServer, cli_env: dict[str, str]) -> None:
    cli_env.pop("DGX_APP_SECRET", None)
    proc = run_cli(overrides(runai), env=cli_env)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "${oc.env:DGX_APP_SECRET} cannot be resolved" in proc.stderr and "DGX_APP_SECRET' not found" in proc.stderr


def test_429_is_retried_after_retry_after(runai: RunaiServer, nemorun_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_APP_SECRET", SECRET)
    runai.inject(429, "POST", "/workloads/trainings", "Too many requests", retry_after="1")
    record = launch(runai, nemorun_home)
    assert len(runai.calls("POST", "/workloads/trainings")) == 2
    assert handle_of(record).id in runai.state.workloads and len(runai.state.workloads) == 1


def test_5xx_on_status_is_retried_and_exhaustion_is_one_line(runai: RunaiServer, nemorun_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_APP_SECRET", SECRET)
    monkeypatch.setattr(submitter, "FIRST_BACKOFF", 0.01)
    handle = handle_of(launch(runai, nemorun_home))
    runai.inject(503, "GET", handle.id, "Please try again in few minutes.", times=2)
    assert submitter.status([handle])[handle.id].state is AppState.PENDING
    runai.inject(503, "GET", handle.id, "Please try again in few minutes.", times=submitter.MAX_ATTEMPTS)
    with pytest.raises(SubmitError) as err:
        submitter.status([handle])
    assert str(err.value) == f"DGX Cloud {submitter.Endpoint.from_handle(handle).host}: GET /workloads/trainings/{handle.id}: HTTP 503: Please try again in few minutes."


def test_4xx_carries_the_service_message(runai: RunaiServer, nemorun_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_APP_SECRET", SECRET)
    policy = "The workload request does not comply with the policy set by the administrator"
    runai.inject(400, "POST", "/workloads/trainings", policy)
    with pytest.raises(SubmitError) as err:
        launch(runai, nemorun_home)
    message = str(err.value)
    assert "\n" not in message and f"POST /workloads/trainings: HTTP 400: {policy}" in message
    assert only_experiment(nemorun_home).job("hello").phase == "failed-to-submit"


def test_expired_token_is_refreshed_once(runai: RunaiServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_APP_SECRET", SECRET)
    client = submitter.Client(submitter.Endpoint(runai.base_url, APP_ID, {"env": "DGX_APP_SECRET"}))
    assert client.project_ids("team-b") == ("4502", PROJECTS[1]["clusterId"])
    runai.expire_tokens()
    assert client.project_ids("team-a") == ("4501", CLUSTER)
    assert len(runai.calls("POST", "/token")) == 2
    # a token refused again right after a refresh is an error, not a loop
    runai.inject(401, "GET", "/org-unit/projects", "Issuer is not familiar.", times=2)
    with pytest.raises(SubmitError, match="GET /org-unit/projects: HTTP 401: Issuer is not familiar."):
        client.project_ids("team-a")
    assert len(runai.calls("POST", "/token")) == 3


def test_unknown_project_and_secret_file(runai: RunaiServer, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    client = submitter.Client(submitter.Endpoint(runai.base_url, APP_ID, {"file": str(secret_file)}))
    with pytest.raises(SubmitError, match=f"no project named 'team-z' is visible to app '{APP_ID}'"):
        client.project_ids("team-z")


def test_cancel_delete_and_gone_workloads(runai: RunaiServer, nemorun_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_APP_SECRET", SECRET)
    handle = handle_of(launch(runai, nemorun_home))
    submitter.cancel(handle)
    assert len(runai.calls("POST", f"/workloads/trainings/{handle.id}/suspend")) == 1
    submitter.cancel(handle, delete=True)
    assert handle.id not in runai.state.workloads
    status = submitter.status([handle])[handle.id]
    assert status.state is AppState.UNKNOWN and "not found" in status.detail
    submitter.cancel(handle)  # gone: nothing to do, no error
    submitter.cancel(handle, delete=True)
    assert len(runai.calls("DELETE", handle.id)) == 1


def test_completed_workload_is_succeeded_and_not_suspended(runai: RunaiServer, nemorun_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_APP_SECRET", SECRET)
    handle = handle_of(launch(runai, nemorun_home))
    runai.set_phase(handle.id, "Completed")
    assert submitter.status([handle])[handle.id].state is AppState.SUCCEEDED
    submitter.cancel(handle)
    assert runai.calls("POST", "/suspend") == []
    runai.set_phase(handle.id, "Failed")
    assert submitter.status([handle])[handle.id].state is AppState.FAILED


def test_logs_say_where_logs_are(runai: RunaiServer, nemorun_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_APP_SECRET", SECRET)
    handle = handle_of(launch(runai, nemorun_home))
    (line,) = list(submitter.logs(handle))
    assert handle.id in line and "Run:ai UI" in line


def test_unreachable_api_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_APP_SECRET", SECRET)
    monkeypatch.setattr(submitter, "FIRST_BACKOFF", 0.01)
    with RunaiServer(APP_ID, SECRET, PROJECTS) as server:
        url = server.base_url
    client = submitter.Client(submitter.Endpoint(url, APP_ID, {"env": "DGX_APP_SECRET"}))
    with pytest.raises(SubmitError) as err:
        client.project_ids("team-a")
    assert str(err.value).startswith(f"DGX Cloud 127.0.0.1:{url.split(':')[2].split('/')[0]}: POST /token: unreachable: ConnectionError")
    assert "\n" not in str(err.value) and SECRET not in str(err.value)


def _job(server: RunaiServer, home: Path, *extra: str) -> "Job":
    from nemorun.lower import check_config, compile_job

    cfg = compose_config(overrides(server, *extra))
    check_config(cfg)
    return compile_job(cfg, Site(experiment_id="exp-direct", submit_dir=str(home), home=str(home)))


def test_resolve_then_render_once_and_submit_sends_exactly_those_bytes(runai: RunaiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The executor's order through ``prepare``: the ids are looked up BEFORE rendering, and
    ``submit`` POSTs the rendered bytes unchanged, writing nothing itself."""
    from nemorun.submitters import prepare, resolve

    monkeypatch.setenv("DGX_APP_SECRET", SECRET)
    job = _job(runai, tmp_path)
    dry_run = target.render(job)  # what a dry run shows: placeholder ids
    with pytest.raises(SubmitError, match="still holds placeholder ids") as err:
        submitter.submit(dry_run, job)
    assert "\n" not in str(err.value) and runai.state.requests == []  # refused before any request

    resolved, rendered = prepare(job)
    assert (resolved.executor.project_id, resolved.executor.cluster_id) == ("4501", CLUSTER)
    assert resolve(resolved) is resolved and len(runai.calls("GET", "/org-unit/projects")) == 1  # nothing left to look up
    handle = submitter.submit(rendered, resolved)
    assert runai.calls("POST", "/workloads/trainings") == [rendered.artifacts[target.ARTIFACT].encode()]
    assert (handle.data["project_id"], handle.data["cluster_id"]) == ("4501", CLUSTER)
    assert not Path(job.job_dir).exists(), "submit must not write the record"


def test_resolve_failure_is_one_line_before_any_workload_request(runai: RunaiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nemorun.submitters import prepare

    monkeypatch.setenv("DGX_APP_SECRET", SECRET)
    with pytest.raises(SubmitError) as err:
        prepare(_job(runai, tmp_path, "executor.project_name=team-z"))
    assert "\n" not in str(err.value) and "no project named 'team-z'" in str(err.value)
    assert runai.calls("POST", "/workloads/trainings") == []
