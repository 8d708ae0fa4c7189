"""Docker target, offline: ``container.json`` is docker-py ``containers.run`` kwargs that docker-py
accepts and that build an Engine API v1.45 create body passing the strict swagger check
(tests/contracts ``docker_create_errors``); bad options fail before submission, as one line."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from nemorun import ir
from nemorun.lower import check_config, compile_job
from nemorun.errors import ArtifactError, ConfigError
from nemorun.ir import Rendered
from nemorun.targets import docker as target
from tests.contracts import docker_create_body, docker_create_errors
from tests.golden_cases import CASES
from tests.helpers import PINNED_SITE, compose_config, run_cli

DOCKER_CASES = sorted(c for c in CASES if c.startswith("docker_"))
BASE = ["executor=docker", "task=hello", "executor.container_image=local/busybox:1"]


def _job(overrides: list[str], package: ir.Package = ir.Package()) -> ir.Job:
    cfg = compose_config(overrides)
    check_config(cfg)
    return compile_job(cfg, PINNED_SITE, package=package)


def _kwargs(overrides: list[str], package: ir.Package = ir.Package()) -> dict:
    rendered = target.render(_job(overrides, package))
    target.validate(rendered)
    return json.loads(rendered.artifacts[target.ARTIFACT])


def test_docker_cases_exist() -> None:
    assert {"docker_minimal", "docker_gpus_shm_ipc_runtime", "docker_volumes_env_quoting", "docker_torchrun"} <= set(DOCKER_CASES)


@pytest.mark.parametrize("case", DOCKER_CASES)
def test_golden_container_json_passes_the_engine_contract(case: str) -> None:
    golden = Path(__file__).resolve().parent.parent / "golden" / case / target.ARTIFACT
    kwargs = json.loads(golden.read_text())
    assert docker_create_errors(kwargs) == []
    assert target.run_kwargs_problems(kwargs) == []


def test_gpus_shm_ipc_runtime_reach_the_host_config() -> None:
    kw = _kwargs(CASES["docker_gpus_shm_ipc_runtime"])
    host = docker_create_body(kw)["HostConfig"]
    assert host["DeviceRequests"] == [{"Driver": "", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}]
    assert host["ShmSize"] == 30 * 1024**3
    assert (host["IpcMode"], host["Runtime"], host["NetworkMode"]) == ("host", "nvidia", "host")
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]} == {"memlock": (-1, -1), "stack": (67108864, 67108864)}


def test_gpu_count_and_no_gpus() -> None:
    assert docker_create_body(_kwargs([*BASE, "executor.num_gpus=2"]))["HostConfig"]["DeviceRequests"][0]["Count"] == 2
    assert "device_requests" not in _kwargs(BASE)


def test_env_with_special_characters_is_passed_verbatim() -> None:
    body = docker_create_body(_kwargs(CASES["docker_volumes_env_quoting"]))
    assert body["Env"] == ["GREETING=hello $USER", "MULTI=line1\nline2", "NCCL_DEBUG=INFO", "QUOTE=it's \"quoted\" = yes"]
    assert body["Cmd"] == ["sh", "scripts/run.sh", "--name", "two words", "$HOME", "it's"]
    assert body["HostConfig"]["Binds"] == ["/data/my set:/data:ro", "/scratch:/scratch", "hf-cache:/root/.cache"]
    assert body["Labels"]["owner"] == "alice o'brien"


def test_labels_name_experiment_and_job_over_user_labels() -> None:
    kw = _kwargs([*BASE, "+executor.labels={nemorun.job: spoofed, team: nlp}"])
    assert kw["labels"] == {
        "team": "nlp",
        target.LABEL_JOB: "hello",
        target.LABEL_EXPERIMENT_ID: PINNED_SITE.experiment_id,
        target.LABEL_EXPERIMENT_NAME: "hello",
    }
    assert kw["name"] == f"nemorun-hello-{PINNED_SITE.experiment_id}"


def test_packaged_code_is_mounted_read_only_and_is_the_working_dir() -> None:
    package = ir.Package(kind="pattern", archive="/home/user/.run/x/abc.tar.gz", sha256="abc", workdir_subpath="src")
    job = _job(BASE, package)
    kw = _kwargs(BASE, package)
    assert f"{job.job_dir}/code:/nemorun/code:ro" in kw["volumes"]
    assert kw["working_dir"] == "/nemorun/code/src"
    assert _kwargs([*BASE, "executor.working_dir=/elsewhere"], package)["working_dir"] == "/elsewhere"


def test_command_needing_expansion_runs_through_the_configured_shell() -> None:
    from nemorun.render import Raw

    job = _job([*BASE, "executor.shell=sh"])
    job = dataclasses.replace(job, task=dataclasses.replace(job.task, kind="script", inline=None, script="run.sh", args=(Raw("$HOSTNAME"), "a b")))
    assert target.command(job) == ["sh", "-c", "exec sh run.sh $HOSTNAME 'a b'"]


@pytest.mark.parametrize(
    "kwargs_patch, message",
    [
        ({"enviroment": {"A": "1"}}, "unexpected keyword argument 'enviroment'"),
        ({"shm_size": "30 gigs"}, "a memory size is a number with the unit b, k, m or g"),
        ({"restart_policy": "on-failure"}, "restart_policy must be dict, not str"),
        ({"restart_policy": {"Name": "sometimes"}}, "restart_policy="),
        ({"privileged": "yes"}, "privileged must be bool"),
        ({"cpu_shares": True}, "cpu_shares must be int, not bool"),
        ({"version": "1.45"}, "unexpected keyword argument 'version' (docker-py sets it)"),
        ({"network": "a", "network_mode": "host"}, "network and network_mode cannot be used together"),
        ({"ulimits": [{"name": "nofile", "soft": "many"}]}, "ulimit"),
        ({"device_requests": [{"count": "all"}]}, "device request"),
        ({"volumes": ["only-one-part"]}, "volume 'only-one-part'"),
        ({"detach": False}, "run detached"),
    ],
)
def test_validate_rejects_what_docker_or_the_engine_would(kwargs_patch: dict, message: str) -> None:
    kw = {**_kwargs(BASE), **kwargs_patch}
    with pytest.raises(ArtifactError, match=re.escape(message)):
        target.validate(Rendered("docker", "hello", {target.ARTIFACT: json.dumps(kw)}, ""))


def test_bad_ulimit_and_gpus_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="executor.ulimits.nofile"):
        _kwargs([*BASE, "+executor.ulimits={nofile: lots}"])
    with pytest.raises(ConfigError, match="num_gpus must be >= -1"):
        _kwargs([*BASE, "executor.num_gpus=-2"])
    with pytest.raises(ConfigError, match="launcher.nproc_per_node"):
        _kwargs(["executor=docker", "task=ddp", "launcher=torchrun", "executor.container_image=x", "executor.num_gpus=-1"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("executor.shm_size=30gigs", "container.json: shm_size='30gigs': a memory size is a number with the unit b, k, m or g"),
        ("executor.volumes=[nocolon]", "container.json: volume 'nocolon'"),
        ("executor.num_gpus=lots", "executor.num_gpus"),
    ],
)
def test_cli_bad_option_is_one_line_exit_2(override: str, message: str, cli_env: dict[str, str]) -> None:
    proc = run_cli([*BASE, override, "dryrun=true"], env=cli_env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nemorun: error: ") and message in proc.stderr
    assert proc.stdout == ""


def test_missing_image_option_is_one_line(cli_env: dict[str, str]) -> None:
    proc = run_cli(["executor=docker", "task=hello", "dryrun=true"], env=cli_env)
    assert proc.returncode == 2
    assert proc.stderr == "nemorun: error: missing required value 'executor.container_image'; set it with executor.container_image=...\n"


def test_dry_run_prints_the_kwargs_and_imports_no_docker(cli_env: dict[str, str]) -> None:
    proc = run_cli([*BASE, "dryrun=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "==> container.json <==" in proc.stdout and '"image": "local/busybox:1"' in proc.stdout
    code = "import sys, nemorun.targets.docker, nemorun.submitters.docker; print('docker' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_unpack_refuses_paths_escaping_the_code_dir(tmp_path: Path, nemorun_home: Path) -> None:
    """The submitter unpacks with tarfile's 'data' filter: a path escaping the code dir is refused."""
    from nemorun.errors import SubmitError
    from nemorun.submitters.docker import _unpack_code

    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 0
        tar.addfile(info)
    job = dataclasses.replace(_job(BASE), job_dir=str(tmp_path / "job"), package=ir.Package(kind="pattern", archive=str(evil)))
    with pytest.raises(SubmitError, match="cannot unpack the code archive"):
        _unpack_code(job)
    assert not (tmp_path / "outside.txt").exists()
