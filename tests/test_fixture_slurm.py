"""Self-test of the slurm_cluster fixture (tests/fixtures/slurm_cluster.py): sbatch locally and over SSH."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.fixtures.slurm_cluster import SlurmCluster, wait_for_job_end

pytestmark = pytest.mark.slurm


def test_cluster_dataclass(slurm_cluster: SlurmCluster):
    assert os.environ["SLURM_CONF"] == str(slurm_cluster.slurm_conf)
    assert slurm_cluster.env() == {"SLURM_CONF": str(slurm_cluster.slurm_conf)}
    assert slurm_cluster.slurm_conf.is_file() and slurm_cluster.ssh_key.is_file()
    assert slurm_cluster.jobs_dir.stat().st_mode & 0o1777 == 0o1777
    with pytest.raises(Exception):
        slurm_cluster.ssh_port = 1  # frozen
    parts = subprocess.run(["sinfo", "-h", "-o", "%P %l %D"], capture_output=True, text=True,
                           check=True).stdout.split("\n")
    assert "batch* 4:00:00 4" in parts and "interactive 1:00:00 4" in parts


def test_two_node_srun_hostname(slurm_cluster: SlurmCluster):
    tag = uuid.uuid4().hex[:8]
    script = slurm_cluster.jobs_dir / f"two-{tag}.sh"
    # the four fake nodes share this host's hostname: print the Slurm node name too
    script.write_text("#!/bin/bash\n#SBATCH --nodes=2 --ntasks-per-node=1\n"
                      "srun bash -c 'echo \"$SLURMD_NODENAME $(hostname)\"'\n")
    out = slurm_cluster.jobs_dir / f"two-{tag}.%j.out"
    r = subprocess.run(["sbatch", "--parsable", f"--output={out}", str(script)],
                       capture_output=True, text=True, check=True)
    job_id = r.stdout.strip()
    assert wait_for_job_end(job_id, timeout=60) == ("COMPLETED", "0:0")
    lines = (slurm_cluster.jobs_dir / f"two-{tag}.{job_id}.out").read_text().split("\n")
    lines = [ln for ln in lines if ln]
    assert sorted(ln.split()[0] for ln in lines) == ["gpu01", "gpu02"]
    assert {ln.split()[1] for ln in lines} == {os.uname().nodename}


def test_failed_job_state(slurm_cluster: SlurmCluster):
    r = subprocess.run(["sbatch", "--parsable", "--output=/dev/null", "--wrap", "exit 3"],
                       capture_output=True, text=True, check=True)
    assert wait_for_job_end(r.stdout, timeout=60) == ("FAILED", "3:0")


def test_sbatch_over_ssh_with_fabric(slurm_cluster: SlurmCluster):
    fabric = pytest.importorskip("fabric", reason="pip install fabric (nemorun[ssh])")
    import paramiko

    c = fabric.Connection(
        slurm_cluster.ssh_host, port=slurm_cluster.ssh_port, user=slurm_cluster.ssh_user,
        connect_kwargs={"key_filename": str(slurm_cluster.ssh_key), "look_for_keys": False,
                        "allow_agent": False},
    )
    # verify the host key against the fixture's known_hosts instead of fabric's AutoAddPolicy
    c.client.load_host_keys(str(slurm_cluster.known_hosts))
    c.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    # in_stream=False: invoke otherwise reads stdin, which pytest's capture forbids (OSError)
    try:
        out = slurm_cluster.jobs_dir / "ssh.%j.out"
        r = c.run(f"sbatch --parsable --output={out} --wrap 'echo via-ssh $SLURM_CONF'",
                  hide=True, in_stream=False)
        job_id = r.stdout.strip()
        assert job_id.isdigit()
        assert wait_for_job_end(job_id, timeout=60) == ("COMPLETED", "0:0")
        text = (slurm_cluster.jobs_dir / f"ssh.{job_id}.out").read_text().strip()
        assert text == f"via-ssh {slurm_cluster.slurm_conf}"
        bad = c.run("sbatch --parsable --nodes=8 --wrap true",
                    hide=True, warn=True, in_stream=False)
        assert bad.exited == 1 and "Node count specification invalid" in bad.stderr
    finally:
        c.close()
