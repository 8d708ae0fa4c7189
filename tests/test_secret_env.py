"""Secret references in ``executor.env_vars`` (``{secret: name[, key: key]}``) on every backend.

The platforms that resolve secrets in the pod (Kubeflow: ``secretKeyRef``; Run:ai: the
``EnvironmentVariable`` secret source; Lepton: ``secret_name_ref``) get the reference, and no
value exists anywhere on our side: each test puts a sentinel value in the submitting
environment under the variable's own name and checks it never reaches an artifact, a request,
the record or the output. No Kubernetes API, Run:ai or Lepton can run here, so submissions go to
the local servers on 127.0.0.1 that ENFORCE the upstream contracts and refuse bodies failing
the strict schemas: ``tests.kube_fake`` (Trainer v2.2+ CRD + CEL), ``tests.dgxcloud_runai_server``
(Run:ai 2.24 OpenAPI) and ``tests.test_lepton_submit.FakeLepton`` (leptonai 0.47.1 job schema).
Local, Docker and Slurm take plain strings only; the test goes through the real CLI.
"""
from __future__ import annotations

import json
from pathlib import Path
import pytest
import yaml

from nemorun.ir import SecretRef
from nemorun.plan import plan_config
from tests.contracts import runai_errors, trainjob_errors
from tests.dgxcloud_runai_server import RunaiServer
from tests.golden_cases import CASES
from tests.helpers import PINNED_SITE, compose_config, run_cli
from tests.kube_fake import FakeKube
from tests.test_dgxcloud_api import APP_ID as DGX_APP_ID, SECRET as DGX_APP_SECRET, runai  # noqa: F401 - fixture
from tests.test_kubeflow_submit import fake_kube  # noqa: F401 - fixture

SENTINEL = "hf_sentinel_VALUE_must_never_appear"
HF_REF = "+executor.env_vars.HF_TOKEN={secret: hf-token, key: token}"
KUBEFLOW = ["executor=kubeflow", "task=hello", "executor.image=nvcr.io/nvidia/nemo:25.04", "executor.namespace=team-a"]


def files_containing(root: Path, text: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def assert_no_value(root: Path, *outputs: str) -> None:
    assert files_containing(root, SENTINEL) == [] and all(SENTINEL not in o for o in outputs)


def dgx_overrides(base_url: str, *extra: str) -> list[str]:
    return [
        "executor=dgxcloud", "task=hello", f"executor.base_url={base_url}", f"executor.app_id={DGX_APP_ID}",
        "executor.app_secret_env=DGX_APP_SECRET", "executor.project_name=team-a",
        "executor.container_image=nvcr.io/nvidia/nemo:25.04", *extra,
    ]


def test_one_parser_gives_the_same_ir_reference_to_every_target() -> None:
    kube = plan_config(compose_config([*KUBEFLOW, HF_REF, "+executor.env_vars.A=1"]), PINNED_SITE).jobs[0].job
    dgx = plan_config(compose_config(dgx_overrides("https://tenant.example.com/api/v1", HF_REF)), PINNED_SITE).jobs[0].job
    lepton = plan_config(compose_config(CASES["lepton_train_torchrun"]), PINNED_SITE).jobs[0].job
    assert kube.secrets == dgx.secrets == {"HF_TOKEN": SecretRef("hf-token", "token")}
    assert lepton.secrets == {"HF_TOKEN": SecretRef("hf-token")}
    assert "HF_TOKEN" not in kube.env and kube.env["A"] == "1"


def test_kubeflow_secret_key_ref_through_the_cli_and_the_fake_apiserver(
    fake_kube: FakeKube, cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path
) -> None:
    env = dict(cli_env, HF_TOKEN=SENTINEL, KUBECONFIG=str(fake_kube.kubeconfig(tmp_path / "kc", namespace="team-a")))
    dry = run_cli([*KUBEFLOW, HF_REF, "dryrun=true"], env=env)
    assert dry.returncode == 0, dry.stderr
    proc = run_cli([*KUBEFLOW, HF_REF], env=env)
    assert proc.returncode == 0, proc.stderr
    [(_, name)] = list(fake_kube.trainjobs)
    sent = fake_kube.trainjobs[("team-a", name)]
    ref = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
    assert sent["spec"]["trainer"]["env"] == [ref]  # the server refuses bodies failing the strict CRD
    [recorded] = nemorun_home.glob("experiments/*/*/jobs/hello/trainjob.yaml")
    doc = yaml.safe_load(recorded.read_text())
    assert doc["spec"] == sent["spec"] and trainjob_errors(doc, "v2.2+") == []
    assert "secretKeyRef" in dry.stdout and "hf-token" in dry.stdout
    assert_no_value(nemorun_home, dry.stdout, dry.stderr, proc.stdout, proc.stderr, json.dumps(sent))


def test_dgxcloud_secret_source_through_the_contract_server(runai: RunaiServer, cli_env: dict[str, str], nemorun_home: Path) -> None:
    env = dict(cli_env, HF_TOKEN=SENTINEL, DGX_APP_SECRET=DGX_APP_SECRET)
    proc = run_cli(dgx_overrides(runai.base_url, HF_REF, "+executor.env_vars.NCCL_DEBUG=INFO"), env=env)
    assert proc.returncode == 0, proc.stderr
    [sent] = runai.calls("POST", "/workloads/trainings")
    body = json.loads(sent)
    assert body["spec"]["environmentVariables"] == [
        {"name": "HF_TOKEN", "secret": {"name": "hf-token", "key": "token"}},
        {"name": "NCCL_DEBUG", "value": "INFO"},
    ]
    assert runai_errors(body, "TrainingCreationRequest") == []
    assert_no_value(nemorun_home, proc.stdout, proc.stderr, sent.decode())


def test_lepton_secret_name_ref_and_no_key(cli_env: dict[str, str], nemorun_home: Path) -> None:
    """Lepton's workspace secrets have no keys: ``key`` is refused rather than dropped."""
    env = dict(cli_env, HF_TOKEN=SENTINEL)
    proc = run_cli([*CASES["lepton_train_torchrun"], "dryrun=true"], env=env)
    assert proc.returncode == 0, proc.stderr
    # the dry run prints a readable script view after the JSON: parse the JSON document only
    body, _ = json.JSONDecoder().raw_decode(proc.stdout.split("==> job.json <==\n", 1)[1])
    assert {"name": "HF_TOKEN", "value_from": {"secret_name_ref": "hf-token"}} in body["spec"]["envs"]
    assert_no_value(nemorun_home, proc.stdout, proc.stderr)
    keyed = run_cli([*CASES["lepton_train_torchrun"], "dryrun=true", "+executor.env_vars.X={secret: s, key: k}"], env=cli_env)
    assert keyed.returncode == 2 and keyed.stderr.count("\n") == 1
    assert "executor.env_vars.X: a mapping value must be {secret: <secret name>} (unknown: key)" in keyed.stderr


@pytest.mark.parametrize(
    "backend, extra, expected",
    [
        ("kubeflow", ["+executor.env_vars.HF_TOKEN={secret: hf-token}"], "{secret: <secret name>, key: <key in the secret>} (missing: key)"),
        ("kubeflow", ["+executor.env_vars.HF_TOKEN={secret: hf-token, key: token, optional: true}"], "(unknown: optional)"),
        ("kubeflow", ["+executor.env_vars.HF_TOKEN={secret: '', key: token}"], "(not a non-empty string: secret)"),
        ("kubeflow", ["+executor.env_vars.HF_TOKEN={secret: HF_Token, key: token}"], "secret name 'HF_Token' is not a DNS subdomain"),
        ("kubeflow", ["+executor.env_vars.HF_TOKEN={secret: hf-token, key: 'a b'}"], "secret key 'a b' may hold only"),
        ("kubeflow", ["+executor.env_vars.HF_TOKEN=[a, b]"], "executor.env_vars.HF_TOKEN: a value must be a string or {secret"),
        ("kubeflow", [HF_REF, "+task.env.HF_TOKEN=x"], "task.env.HF_TOKEN is also a secret reference in executor.env_vars"),
        ("dgxcloud", ["+executor.env_vars.HF_TOKEN={secret: hf-token}"], "(missing: key)"),
        ("dgxcloud", ["+executor.env_vars.HF_TOKEN={name: hf-token, key: token}"], "(missing: secret; unknown: name)"),
        ("dgxcloud", ["+executor.env_vars.HF_TOKEN={secret: hf.token, key: token}"], "secret name 'hf.token' is not a Kubernetes name"),
    ],
)
def test_bad_references_are_one_line_exit_2_and_record_nothing(
    backend: str, extra: list[str], expected: str, cli_env: dict[str, str], nemorun_home: Path
) -> None:
    base = KUBEFLOW if backend == "kubeflow" else dgx_overrides("https://tenant.example.com/api/v1")
    proc = run_cli([*base, *extra, "dryrun=true"], env=cli_env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nemorun: error: ") and expected in proc.stderr, proc.stderr
    assert not (nemorun_home / "experiments").exists()


@pytest.mark.parametrize(
    "executor",
    [
        ["executor=local"],
        ["executor=docker", "executor.container_image=python:3.11-slim"],
        ["executor=slurm", "executor.partition=batch"],
    ],
)
def test_plain_executors_refuse_references_naming_the_ones_that_take_them(
    executor: list[str], cli_env: dict[str, str], nemorun_home: Path
) -> None:
    """Local jobs inherit the submitting shell's environment and Slurm's node environment comes from
    sbatch (``container_env`` passes host variables into Pyxis by name); neither has a secret store
    to reference, and Docker would need the value in the create body. So references are refused."""
    kind = executor[0].split("=")[1]
    proc = run_cli([*executor, "task=hello", "+executor.env_vars.HF_TOKEN={secret: hf-token}", "dryrun=true"], env=cli_env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        "nemorun: error: executor.env_vars.HF_TOKEN: secret references ({secret: ...}) are supported by the "
        f"dgxcloud, kubeflow and lepton executors only; executor={kind} takes plain string values\n"
    )
    assert not (nemorun_home / "experiments").exists()
