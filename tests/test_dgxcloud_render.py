"""executor=dgxcloud: schema, secret handling at compile time, and ``workload.json`` checked
against the Run:ai 2.24 OpenAPI request schemas in strict mode (tests.contracts)."""
from __future__ import annotations

import json
import re
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from nemorun.errors import ConfigError
from nemorun.plan import plan_config
from nemorun.targets import dgxcloud as target
from tests.contracts import runai_errors
from tests.golden_cases import CASES
from tests.helpers import PINNED_SITE, compose_config, run_cli
from tests.test_golden import render_case

SECRET = "s3cr3t-Value-42"
BASE = [
    "executor=dgxcloud",
    "executor.base_url=https://tenant.example.com/api/v1",
    "executor.app_id=nemorun-ci",
    "executor.project_name=team-a",
    "executor.container_image=nvcr.io/nvidia/nemo:25.04",
]
INTERPOLATED = "executor.app_secret=${oc.env:DGX_APP_SECRET}"
SCHEMA = {"trainings": "TrainingCreationRequest", "distributed": "DistributedCreationRequest"}


def render(overrides: list[str]) -> dict:
    planned = plan_config(compose_config([*BASE, *overrides]), PINNED_SITE).jobs
    return json.loads(planned[0].rendered.artifacts[target.ARTIFACT])


def strict_errors(body: dict) -> list[str]:
    kind = "distributed" if "distributedFramework" in body["spec"] else "trainings"
    return runai_errors(body, SCHEMA[kind])


@pytest.mark.parametrize("case", sorted(c for c in CASES if c.startswith("dgxcloud_")))
def test_golden_workloads_pass_the_strict_schema(case: str) -> None:
    body = json.loads(render_case(CASES[case])[target.ARTIFACT])
    assert strict_errors(body) == []
    golden = Path(__file__).parent.parent / "golden" / case / target.ARTIFACT
    assert strict_errors(json.loads(golden.read_text())) == []


def test_the_validator_does_reject_a_broken_request() -> None:
    body = render(["task=hello", INTERPOLATED])
    body["clusterId"] = "not-a-uuid"
    body["spec"]["imagee"] = "typo"
    errors = strict_errors(body)
    assert any("clusterId" in e for e in errors) and any("imagee" in e for e in errors)


def test_one_node_is_a_training_and_more_a_distributed_pytorch_workload() -> None:
    one = render(["task=hello", INTERPOLATED])
    assert "distributedFramework" not in one["spec"] and "masterSpecSameAsWorker" not in one
    three = render(["task=hello", INTERPOLATED, "executor.nodes=3", "executor.gpus_per_node=8"])
    spec = three["spec"]
    assert (spec["distributedFramework"], spec["numWorkers"], spec["minReplicas"], spec["maxReplicas"]) == ("PyTorch", 2, 2, 2)
    assert three["masterSpecSameAsWorker"] is True and spec["compute"]["gpuDevicesRequest"] == 8
    assert strict_errors(one) == [] and strict_errors(three) == []


def test_secret_interpolation_stays_unresolved_in_the_ir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_APP_SECRET", SECRET)
    planned = plan_config(compose_config([*BASE, "task=hello", INTERPOLATED]), PINNED_SITE).jobs
    job, rendered = planned[0].job, planned[0].rendered
    assert job.executor.app_secret == "${oc.env:DGX_APP_SECRET}"
    assert SECRET not in repr(job) and SECRET not in repr(rendered)


def test_dry_run_needs_no_secret_and_shows_marked_placeholders(cli_env: dict[str, str], tmp_path: Path) -> None:
    cli_env.pop("DGX_APP_SECRET", None)
    proc = run_cli([*BASE, "task=hello", INTERPOLATED, "dryrun=true", f"render_dir={tmp_path}"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    body = json.loads((tmp_path / target.ARTIFACT).read_text())
    assert body["clusterId"] == target.PLACEHOLDER_CLUSTER_ID
    assert body["projectId"] == target.placeholder_project_id("team-a") and target.has_placeholders(body)
    assert "looked up from project 'team-a' at submission" in proc.stdout


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["executor.app_secret=plain-literal"], "app_secret holds a literal value"),
        ([], "needs exactly one of app_secret="),
        ([INTERPOLATED, "executor.app_secret_env=DGX_APP_SECRET"], "it sets app_secret and app_secret_env"),
        ([INTERPOLATED, "executor.base_url=tenant.example.com"], "must start with https://"),
        ([INTERPOLATED, "executor.project_id=4501"], "set both project_id and cluster_id"),
        ([INTERPOLATED, "+executor.custom_spec.nodePool=[a]"], "did you mean 'nodePools'?"),
    ],
)
def test_config_mistakes_are_one_line_errors(overrides: list[str], expected: str, cli_env: dict[str, str], nemorun_home: Path) -> None:
    proc = run_cli([*BASE, "task=hello", *overrides], env=cli_env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("nemorun: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert expected in proc.stderr
    assert "plain-literal" not in proc.stderr + proc.stdout
    assert not (nemorun_home / "experiments").exists()


def test_custom_spec_is_merged_into_the_spec() -> None:
    body = render(["task=hello", INTERPOLATED, "+executor.custom_spec.nodePools=[h100]", "+executor.custom_spec.compute.cpuCoreRequest=16"])
    assert body["spec"]["nodePools"] == ["h100"]
    assert body["spec"]["compute"] == {"gpuDevicesRequest": 0, "largeShmRequest": True, "cpuCoreRequest": 16}
    assert strict_errors(body) == []


def test_configured_ids_skip_the_placeholders() -> None:
    cluster = "71f69d83-ba66-4822-adf5-55ce55efd210"
    body = render(["task=hello", INTERPOLATED, "executor.project_id=4501", f"executor.cluster_id={cluster}"])
    assert (body["projectId"], body["clusterId"]) == ("4501", cluster) and not target.has_placeholders(body)


def _run_like_the_pod(body: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run command + args as the pod would: split shell-style, environment from the request."""
    spec = body["spec"]
    argv = shlex.split(spec["command"]) + shlex.split(spec.get("args", ""))
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("environmentVariables", [])}}
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)


def test_function_task_command_runs(tmp_path: Path) -> None:
    body = render(["task=train", "task.params.steps=3", INTERPOLATED])
    proc = _run_like_the_pod(body, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("loss") >= 3


def test_inline_and_script_commands_keep_their_words(tmp_path: Path) -> None:
    body = render(["task=hello", "task.inline='echo \"two words\" $((1+2))'", INTERPOLATED])
    assert _run_like_the_pod(body, tmp_path).stdout == "two words 3\n"
    (tmp_path / "show.sh").write_text('printf "<%s>" "$@"\n')
    body = render(["task=hello", "task.inline=null", "task.script=show.sh", "task.args=['a b', $HOME]", INTERPOLATED])
    assert body["spec"]["command"] == "bash"
    assert _run_like_the_pod(body, tmp_path).stdout == "<a b><$HOME>"


def test_workload_names_are_kubernetes_names() -> None:
    body = render(["task=hello", "name=My_Experiment.v2", INTERPOLATED])
    assert re.fullmatch(r"my-experiment-v2-hello-[0-9a-f]{6}", body["name"])
    long = render(["task=hello", "name=" + "x" * 64, INTERPOLATED])
    assert len(long["name"]) <= target.MAX_NAME


def test_with_ids_rerenders_without_placeholders() -> None:
    planned = plan_config(compose_config([*BASE, "task=hello", INTERPOLATED]), PINNED_SITE).jobs
    job = target.with_ids(planned[0].job, "4501", "71f69d83-ba66-4822-adf5-55ce55efd210")
    body = json.loads(target.render(job).artifacts[target.ARTIFACT])
    assert not target.has_placeholders(body) and strict_errors(body) == []


def test_unknown_custom_spec_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="custom_spec.bogus"):
        render(["task=hello", INTERPOLATED, "+executor.custom_spec.bogus=1"])
