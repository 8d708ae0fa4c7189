"""Kubeflow submitter through the real ``kubernetes`` client against a contract-enforcing fake API.

No Kubernetes API server can run on these machines, so these tests run the submitter against
``tests.kube_fake``: a local HTTP server on 127.0.0.1 implementing the endpoints used
(configmaps create/replace/get/delete, trainjobs create/get/delete, pods list by label, pod log).
It REJECTS bodies that fail the strict Trainer v2.2+ CRD schema (+ CEL) or Kubernetes' ConfigMap
rules with a 422 ``Status`` like the apiserver, answers 404 for a ``runtimeRef`` to a runtime it
does not hold, and 403 in a forbidden namespace. The client finds it through a generated
kubeconfig (``KUBECONFIG``), as it would find a real cluster.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import yaml

from nemorun.errors import ConfigError, SubmitError
from nemorun.ir import Rendered
from nemorun.plan import plan_config
from nemorun.states import AppState
from nemorun.submitters import kubeflow as sub
from tests.golden_cases import KUBEFLOW_PROJECT
from tests.helpers import PINNED_SITE, compose_config, run_cli
from tests.kube_fake import FakeKube, serving

BASE = ["executor=kubeflow", "executor.image=nvcr.io/nvidia/nemo:25.04"]
PACKAGED = [*BASE, "task=hello", "task.inline=null", "task.script=train.py", "packager=configmap", f"packager.base_path={KUBEFLOW_PROJECT}"]


@pytest.fixture
def fake_kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKube]:
    with serving(FakeKube(forbidden_namespaces={"locked"}), tmp_path / "kubeconfig", monkeypatch) as fake:
        yield fake


def _rendered(overrides: list[str]) -> Rendered:
    return plan_config(compose_config(overrides), PINNED_SITE).jobs[0].rendered


def test_happy_path_create_status_logs_cancel(fake_kube: FakeKube) -> None:
    rendered = _rendered([*PACKAGED, "executor.nodes=2", "launcher=torchrun"])
    handle = sub.submit(rendered)
    name = handle.data["name"]
    assert handle.id == f"default/{name}" and handle.data["configmap"] == f"nemorun-code-{name}"
    # exactly the rendered objects reached the server, with strict field validation asked for
    assert fake_kube.trainjobs[("default", name)]["spec"] == yaml.safe_load(rendered.artifacts["trainjob.yaml"])["spec"]
    assert fake_kube.configmaps[("default", f"nemorun-code-{name}")] == yaml.safe_load(rendered.artifacts["configmap.yaml"])
    creates = [q for m, _, q in fake_kube.requests if m == "POST"]
    assert len(creates) == 2 and all(q.get("fieldValidation") == ["Strict"] for q in creates)

    assert sub.status([handle])[handle.id].state is AppState.RUNNING
    lines = list(sub.logs(handle))
    assert lines == [
        f"[{name}-node-0-0-abcde] node 0 of {name}: step 1\n",
        f"[{name}-node-0-0-abcde] node 0 of {name}: done\n",
        f"[{name}-node-1-0-abcde] node 1 of {name}: step 1\n",
        f"[{name}-node-1-0-abcde] node 1 of {name}: done\n",
    ]
    fake_kube.finish("default", name, ok=True)
    done = sub.status([handle])[handle.id]
    assert (done.state, done.exit_code) == (AppState.SUCCEEDED, 0) and "JobSetCompleted" in done.detail

    sub.cancel(handle)
    assert fake_kube.trainjobs == {} and fake_kube.configmaps == {} and fake_kube.pods == {}
    sub.cancel(handle)  # idempotent
    assert sub.status([handle])[handle.id].state is AppState.CANCELLED


def test_failed_condition_is_failed(fake_kube: FakeKube) -> None:
    handle = sub.submit(_rendered([*BASE, "task=hello"]))
    assert handle.data["configmap"] is None and fake_kube.configmaps == {}
    fake_kube.finish("default", handle.data["name"], ok=False)
    result = sub.status([handle])[handle.id]
    assert result.state is AppState.FAILED and "JobSetFailed" in result.detail


def test_existing_configmap_is_replaced(fake_kube: FakeKube) -> None:
    rendered = _rendered(PACKAGED)
    cm = yaml.safe_load(rendered.artifacts["configmap.yaml"])
    fake_kube.configmaps[("default", cm["metadata"]["name"])] = dict(cm, data={"stale.py": ""})
    sub.submit(rendered)
    assert fake_kube.configmaps[("default", cm["metadata"]["name"])] == cm
    assert [m for m, p, _ in fake_kube.requests if "configmaps" in p] == ["POST", "PUT"]


def test_missing_runtime_is_one_line_naming_the_trainjob_and_cleans_up(fake_kube: FakeKube) -> None:
    rendered = _rendered([*PACKAGED, "executor.runtime_name=no-such-runtime"])
    name = yaml.safe_load(rendered.artifacts["trainjob.yaml"])["metadata"]["name"]
    with pytest.raises(SubmitError) as err:
        sub.submit(rendered)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"creating TrainJob default/{name} on {fake_kube.url}: 404 Not Found: ")
    assert 'clustertrainingruntimes.trainer.kubeflow.org "no-such-runtime" not found' in message
    assert "kubectl get clustertrainingruntimes.trainer.kubeflow.org" in message
    assert fake_kube.configmaps == {} and fake_kube.trainjobs == {}


def test_forbidden_namespace_is_one_line_naming_the_configmap(fake_kube: FakeKube) -> None:
    with pytest.raises(SubmitError) as err:
        sub.submit(_rendered([*PACKAGED, "executor.namespace=locked"]))
    message = str(err.value)
    assert message.startswith("creating ConfigMap locked/nemorun-code-") and ": 403 Forbidden: " in message
    assert 'cannot create resource "configmaps"' in message and fake_kube.trainjobs == {}


def test_unknown_field_is_refused_with_422(fake_kube: FakeKube) -> None:
    """A typo inside a raw Kubernetes object the user passes through is caught by strict validation."""
    rendered = _rendered([*BASE, "task=hello", "executor.volumes=[{name: data, persistentVolumeClaim: {claimName: x}, tyop: 1}]"])
    with pytest.raises(SubmitError) as err:
        sub.submit(rendered)
    assert ": 422 Unprocessable Entity: TrainJob " in str(err.value) and "'tyop' was unexpected" in str(err.value)
    assert fake_kube.trainjobs == {}


def test_oversize_configmap_is_refused_before_any_request(fake_kube: FakeKube) -> None:
    rendered = _rendered(PACKAGED)
    cm = yaml.safe_load(rendered.artifacts["configmap.yaml"])
    cm["data"]["big.py"] = "#" * (1024 * 1024)
    artifacts = dict(rendered.artifacts, **{"configmap.yaml": yaml.safe_dump(cm)})
    with pytest.raises(ConfigError, match="over Kubernetes' 1 MiB limit; largest: big.py"):
        sub.submit(Rendered(rendered.target, rendered.job_name, artifacts, rendered.submit_command))
    assert fake_kube.requests == []


def test_cli_submit_and_missing_runtime(fake_kube: FakeKube, cli_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(cli_env, KUBECONFIG=str(fake_kube.kubeconfig(tmp_path / "kc")))
    ok = run_cli([*PACKAGED], env=env)
    assert ok.returncode == 0, ok.stderr
    assert "submitted as default/hello-" in ok.stdout and len(fake_kube.trainjobs) == 1
    (ns, name), = fake_kube.trainjobs
    status = run_cli(["exp", "status", "latest"], env=env)
    assert status.returncode == 0 and "RUNNING" in status.stdout, status.stderr
    logs = run_cli(["exp", "logs", "latest"], env=env)
    assert logs.returncode == 0 and logs.stdout == f"node 0 of {name}: step 1\nnode 0 of {name}: done\n", logs.stderr
    cancel = run_cli(["exp", "cancel", "latest"], env=env)
    assert cancel.returncode == 0 and fake_kube.trainjobs == {} and fake_kube.configmaps == {}, cancel.stderr

    bad = run_cli([*PACKAGED, "executor.runtime_name=absent"], env=env)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("nemorun: error: job hello was not submitted: creating TrainJob default/hello-")
    assert 'clustertrainingruntimes.trainer.kubeflow.org "absent" not found' in bad.stderr


def test_cli_oversize_sends_nothing(fake_kube: FakeKube, cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("#" * (1024 * 1024 + 1))
    env = dict(cli_env, KUBECONFIG=str(fake_kube.kubeconfig(tmp_path / "kc")))
    proc = run_cli([*BASE, "task=hello", "packager=configmap", f"packager.base_path={tmp_path}"], env=env)
    assert proc.returncode == 2 and "train.py (1.00 MiB)" in proc.stderr
    assert fake_kube.requests == []
