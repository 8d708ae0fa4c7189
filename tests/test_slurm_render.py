"""Slurm rendering: every golden sbatch.sh passes bash -n, shellcheck, the exact-flag contracts and
``sbatch --test-only`` on the real test cluster; config mistakes fail before rendering; the
#SBATCH quoting and the requeue guard behave as written (real sbatch, real bash)."""
from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from nemorun.lower import check_config, compile_job
from nemorun.plan import render_job
from nemorun.targets.slurm import srun_commands
from tests.contracts import assert_valid_cli, assert_valid_sbatch_header
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.golden_cases import CASES
from tests.helpers import PINNED_SITE, compose_config, run_cli

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
SLURM_CASES = sorted(c for c in CASES if c.startswith("slurm_"))


def _script(case: str) -> Path:
    return GOLDEN / case / "sbatch.sh"


@pytest.mark.parametrize("case", SLURM_CASES)
def test_golden_script_is_clean(case: str) -> None:
    text = _script(case).read_text()
    subprocess.run(["bash", "-n", str(_script(case))], check=True)
    sc = subprocess.run(["shellcheck", "-S", "warning", "-s", "bash", str(_script(case))], capture_output=True, text=True)
    assert sc.returncode == 0, sc.stdout
    assert_valid_sbatch_header(text)
    steps = srun_commands(text)
    assert steps, "no srun step found"
    for opts in steps:
        assert_valid_cli([*opts, "true"], "srun")


@pytest.mark.slurm
@pytest.mark.parametrize("case", SLURM_CASES)
def test_golden_script_passes_sbatch_test_only(case: str, slurm_cluster: SlurmCluster) -> None:
    r = subprocess.run(["sbatch", "--test-only", str(_script(case))], capture_output=True, text=True)
    assert r.returncode == 0 and "to start at" in r.stderr, r.stderr


@pytest.mark.parametrize(
    "override, message",
    [
        ("executor.time=1h", "time='1h' is not a Slurm time limit"),
        ("+executor.additional_parameters.gpus_per_nod=8", "'--gpus-per-nod' is only a prefix of sbatch's --gpus-per-node"),
        ("+executor.additional_parameters.gpus-per-nodes=8", "'--gpus-per-nodes' is not a sbatch option; did you mean '--gpus-per-node'?"),
        ("+executor.additional_parameters.output=/tmp/x", "--output is set by nemorun itself"),
        ("+executor.additional_parameters.nodes=2", "set executor.nodes instead"),
        ("executor.srun_args=['--container-imag=x']", "'--container-imag' is only a prefix of srun's --container-image"),
        ("executor.dependency_type=afterwards", "dependency_type='afterwards'"),
        ("executor.comment='a\nb'", "comment must not contain newlines"),
    ],
)
def test_config_mistakes_fail_before_rendering(override: str, message: str, cli_env: dict[str, str]) -> None:
    r = run_cli(["executor=slurm", "task=hello", override, "dryrun=true"], env=cli_env)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nemorun: error: ") and message in lines[0], r.stderr


@pytest.mark.parametrize("value", ["30", "30:00", "04:00:00", "2-00", "2-12:30", "2-12:30:00", "UNLIMITED"])
def test_slurm_time_formats_accepted(value: str) -> None:
    cfg = compose_config(["executor=slurm", "task=hello", f"executor.time={value}"])
    check_config(cfg)
    assert f"#SBATCH --time={value}\n" in render_job(compile_job(cfg, PINNED_SITE)).artifacts["sbatch.sh"]


@pytest.mark.parametrize("dep_type", ["after", "afterok", "afterany", "afternotok", "aftercorr"])
def test_dependency_line(dep_type: str) -> None:
    cfg = compose_config(["executor=slurm", "task=hello", f"executor.dependency_type={dep_type}"])
    job = compile_job(cfg, PINNED_SITE, job_name="second", dependencies=("12", "13"))
    text = render_job(job).artifacts["sbatch.sh"]
    assert f"#SBATCH --dependency={dep_type}:12:13\n" in text
    assert "#SBATCH --job-name=hello-second\n" in text


@pytest.mark.slurm
def test_sbatch_header_quoting_reaches_slurm_verbatim(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """sbatch reads #SBATCH values with its own parser (double quotes, backslashes, # comments)."""
    comment = 'run #7: "quoted" it\'s a\\b  two spaces'
    cfg = compose_config(["executor=slurm", "task=hello", f"executor.job_dir={slurm_cluster.jobs_dir}"])
    cfg.executor.comment = comment
    cfg.executor.job_name = "x.y-z_1"
    script = tmp_path / "sbatch.sh"
    script.write_text(render_job(compile_job(cfg, PINNED_SITE)).artifacts["sbatch.sh"])
    job_id = subprocess.run(["sbatch", "--parsable", "--hold", str(script)], capture_output=True, text=True, check=True).stdout.strip()
    try:
        shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    finally:
        subprocess.run(["scancel", job_id], check=True)
    assert re.search(r"^\s*Comment=(.*)$", shown, flags=re.M).group(1).rstrip() == comment.rstrip()
    assert "JobName=x.y-z_1" in shown


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("srun_rc, restarts, requeued", [(3, "0", True), (3, "2", True), (3, "3", False), (0, "0", False)])
def test_requeue_guard(srun_rc: int, restarts: str, requeued: bool, tmp_path: Path) -> None:
    """Runs the rendered script with stub srun/scontrol executables: the guard requeues a failed
    attempt only while SLURM_RESTART_COUNT < retries, and the script exits with the step's code."""
    cfg = compose_config(["executor=slurm", "task=hello", "executor.retries=3"])
    text = render_job(compile_job(cfg, PINNED_SITE)).artifacts["sbatch.sh"]
    (tmp_path / "bin").mkdir()
    _stub(tmp_path / "bin", "srun", f"exit {srun_rc}")
    _stub(tmp_path / "bin", "scontrol", f'echo "$*" >> {tmp_path}/scontrol.calls')
    env = {**os.environ, "PATH": f"{tmp_path}/bin:{os.environ['PATH']}", "SLURM_JOB_ID": "77", "SLURM_RESTART_COUNT": restarts}
    r = subprocess.run(["bash", "-c", text], env=env, capture_output=True, text=True)
    assert r.returncode == srun_rc
    calls = (tmp_path / "scontrol.calls").read_text() if (tmp_path / "scontrol.calls").exists() else ""
    assert calls == ("requeue 77\n" if requeued else "")
