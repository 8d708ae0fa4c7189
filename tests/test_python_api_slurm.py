"""The Python API on the real Slurm test cluster (``slurm_cluster`` fixture: slurmctld, slurmd
and sshd started for the session): NeMo-Run's SlurmExecutor + SSHTunnel form, a chain with
Slurm's own ``--dependency``, a sweep as ONE job array, and a rerun from the shell."""
from __future__ import annotations

from pathlib import Path

import pytest

import nemorun
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import run_cli

pytestmark = pytest.mark.slurm


def over_ssh(cluster: SlurmCluster) -> nemorun.SlurmExecutor:
    return nemorun.SlurmExecutor(
        time="00:05:00",
        env_vars={"GREETING": "hello from python"},
        tunnel=nemorun.SSHTunnel(host=cluster.ssh_host, port=cluster.ssh_port, user=cluster.ssh_user, identity=str(cluster.ssh_key),
                                 known_hosts=str(cluster.known_hosts), job_dir=str(cluster.jobs_dir / "nemorun-pyapi")),
    )


def test_chain_over_ssh_then_rerun_from_the_shell(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    log = slurm_cluster.jobs_dir / f"pyapi-order-{tmp_path.name}.log"
    with nemorun.Experiment("pyapi-chain", executor=over_ssh(slurm_cluster)) as exp:
        prep = exp.add(nemorun.Script(inline=f'sleep 2; echo "prep $GREETING" >> {log}'), name="prep")
        exp.add(nemorun.Script(inline=f"echo train >> {log}"), name="train", depends_on=[prep])
        exp.run()
    prep_id = exp.record.job("prep").handle["id"]
    assert f"#SBATCH --dependency=afterok:{prep_id}" in (exp.record.job_dir("train") / "sbatch.sh").read_text()
    assert {s.state.value for s in exp.wait(poll=0.5).values()} == {"SUCCEEDED"}
    assert log.read_text().splitlines() == ["prep hello from python", "train"]

    proc = run_cli(["exp", "rerun", exp.id, "executor.env_vars.GREETING=again"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    again = nemorun.Experiment.latest()
    assert again.id != exp.id and {s.state.value for s in again.wait(poll=0.5).values()} == {"SUCCEEDED"}
    assert log.read_text().splitlines()[2:] == ["prep again", "train"]


def test_sweep_is_one_job_array(slurm_cluster: SlurmCluster, nemorun_home: Path) -> None:
    sweep = nemorun.Experiment("pyapi-sweep", executor=nemorun.SlurmExecutor(time="00:05:00"))
    sweep.add_sweep(nemorun.Partial("nemorun.examples.train.train", steps=2), grid={"lr": [0.1, 0.2, 0.3]})
    sweep.run()
    assert sweep.meta["arrays"] == {"train-array": ["train-0", "train-1", "train-2"]}
    assert {s.state.value for s in sweep.wait(poll=0.5).values()} == {"SUCCEEDED"}
    outputs = ["".join(sweep.logs(f"train-{i}")) for i in range(3)]
    assert all("rank=0 done" in o for o in outputs) and len(set(outputs)) == 3
