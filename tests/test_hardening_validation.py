"""Hostile values and bad numbers are refused at compose time, in one line, before anything runs
(issue 13: a sweep dry run used to ``eval`` the scripts it checked; a newline in a name became a
shell line of ``launch.sh``)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from nemorun.errors import ArtifactError
from nemorun.validate import batched_shell_checks, check_shell_syntax
from tests.helpers import run_cli, one_line_error

SLURM = ["executor=slurm", "executor.account=a", "executor.partition=batch", "task=hello"]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "NEMORUN_HOME": str(tmp_path / "home")}


def test_sweep_dry_run_checks_syntax_without_running_it(tmp_path: Path) -> None:
    proc = run_cli(["-m", *SLURM, 'task.inline="echo 1","echo 2"',
                    'executor.setup_lines=["}","touch pwned","f() {"]', "dryrun=true"], env=_env(tmp_path), cwd=str(tmp_path))
    assert not (tmp_path / "pwned").exists()
    assert "sbatch.sh is not valid bash" in one_line_error(proc)


def test_every_script_of_a_batch_is_checked_alone(tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    # an unclosed quote in one script must not swallow (or hide) the next; nothing may run
    with pytest.raises(ArtifactError, match=r"^job b: b.sh is not valid bash: line 1: unexpected EOF"):
        with batched_shell_checks() as label:
            label("job a")
            check_shell_syntax("a.sh", f"echo ok\ntouch {canary}\n")
            label("job b")
            check_shell_syntax("b.sh", "echo 'unclosed\n")
            label("job c")
            check_shell_syntax("c.sh", "echo 'closed'\n")
    with batched_shell_checks() as label:
        for i in range(200):  # more than one chunk: still each alone, all good
            check_shell_syntax("x.sh", f"echo {i}\n")
    with pytest.raises(ArtifactError, match="^s.sh is not valid bash"):
        check_shell_syntax("s.sh", f"}}\ntouch {canary}\nf() {{")
    assert not canary.exists()


def test_newline_in_name_is_refused_before_anything_runs(tmp_path: Path) -> None:
    proc = run_cli(["task=hello", 'name="q\ntouch pwned #"', "wait=true"], env=_env(tmp_path), cwd=str(tmp_path))
    assert "must be a name" in one_line_error(proc)
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "home" / "experiments").exists() or not any((tmp_path / "home" / "experiments").iterdir())


@pytest.mark.parametrize("override", ["task.name='a\nb'", "task.name=../../../../pwned", "task.name=..", "task.name=a/b",
                                      "task.name=-rf", f"task.name={'x' * 65}"])
def test_bad_task_names_fail_at_compose_time(tmp_path: Path, override: str) -> None:
    proc = run_cli(["task=hello", override, "dryrun=true"], env=_env(tmp_path), cwd=str(tmp_path))
    assert "task: name must be a name" in one_line_error(proc)


@pytest.mark.parametrize("override", ["name=../../escape", "name=a/b", "name=..", "name='x y'"])
def test_bad_experiment_names_fail_in_a_dry_run_too(tmp_path: Path, override: str) -> None:
    # needs nemorun.lower.experiment_name to apply schemas.core.check_name (see the HARD report)
    proc = run_cli(["task=hello", override, "dryrun=true"], env=_env(tmp_path), cwd=str(tmp_path))
    assert "must be a name" in one_line_error(proc)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([*SLURM, "executor.nodes=0"], "executor: nodes must be >= 1 and <= 100000 (got 0)"),
        ([*SLURM, "executor.nodes=100001"], "executor: nodes must be >= 1 and <= 100000 (got 100001)"),
        ([*SLURM, "executor.gpus_per_node=-1"], "gpus_per_node must be >= 0"),
        ([*SLURM, "executor.cpus_per_task=-4"], "cpus_per_task must be >= 1"),
        ([*SLURM, "executor.ntasks_per_node=0"], "ntasks_per_node must be >= 1"),
        ([*SLURM, "executor.mem=lots"], "mem must be a Slurm memory size"),
        ([*SLURM, "executor.job_dir=relative/dir"], "executor: job_dir must be an absolute path"),
        ([*SLURM, "executor/tunnel=ssh", "executor.tunnel.host=login", "executor.tunnel.job_dir=scratch"],
         "executor: tunnel.job_dir must be an absolute path"),
        ([*SLURM, "executor/tunnel=ssh", "executor.tunnel.host=login", "executor.tunnel.job_dir=/s", "executor.tunnel.port=0"],
         "tunnel.port must be >= 1 and <= 65535"),
        ([*SLURM, "executor/tunnel=ssh", "executor.tunnel.host=login", "executor.tunnel.job_dir=/s", "executor.tunnel.port=65536"],
         "tunnel.port must be >= 1 and <= 65535"),
        ([*SLURM, "executor/tunnel=ssh", "executor.tunnel.host='-oProxyCommand=x'", "executor.tunnel.job_dir=/s"],
         "tunnel.host must be one word"),
        ([*SLURM, "executor.job_name=a/b"], "job_name must be a name"),
        ([*SLURM, "executor.container_mounts=['/a:/a,/etc:/etc']"], "container_mounts must be one mount each"),
        ([*SLURM, "executor.comment='a\nb'"], "comment must not contain newlines"),
        (["task=hello", "launcher=torchrun", "launcher.rdzv_port=70000"], "launcher: rdzv_port must be >= 1 and <= 65535"),
        (["task=hello", "executor.ntasks_per_node=-2"], "ntasks_per_node must be >= 1"),
        (["task=hello", "executor.retries=-1"], "retries must be >= 0"),
        (["executor=kubeflow", "task=hello", "executor.image=i", "executor.nodes=0"], "nodes must be >= 1"),
        (["executor=kubeflow", "task=hello", "executor.image=i", "executor.gpus=-1"], "gpus must be >= 0"),
        (["executor=kubeflow", "task=hello", "executor.image=i", "executor.code_dir=code"], "code_dir must be an absolute path"),
        (["executor=kubeflow", "task=hello", "executor.image=i", "executor.namespace=Bad_NS"], "namespace must be a DNS label"),
        (["executor=skypilot", "task=hello", "executor.num_nodes=200000"], "num_nodes must be >= 1 and <= 100000"),
        (["executor=lepton", "task=hello", "executor.resource_shape=cpu.small", "executor.container_image=i", "executor.nodes=-1"],
         "nodes must be >= 1"),
        (["executor=docker", "task=hello", "executor.container_image=i", "executor.num_gpus=-2"], "num_gpus must be >= -1"),
        (["executor=docker", "task=hello", "executor.container_image=i", "executor.working_dir=rel"], "working_dir must be an absolute path"),
    ],
)
def test_bad_numbers_and_paths_fail_at_compose_time(tmp_path: Path, overrides: list[str], message: str) -> None:
    proc = run_cli([*overrides, "dryrun=true"], env=_env(tmp_path), cwd=str(tmp_path))
    assert message in one_line_error(proc)
