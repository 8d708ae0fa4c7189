"""Time from the command to the printed Slurm job id: local tunnel vs SSH tunnel.

Runs ``python -m nemorun executor=slurm task=hello`` N times per tunnel and measures, from
process start, when the ``submitted as <id>`` line appears on its stdout (the CLI's start-up,
compose, render, validate, record, upload and sbatch included). Uses the cluster named by
SLURM_CONF and SLURMFIX_SSH_* (``. <fixture dir>/env.sh``); with SLURM_CONF unset it starts the
test fixture (tests/fixtures/slurm/start.sh) in a temp dir and stops it afterwards.

    python bench/slurm_submit.py [-n 5]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "slurm"


def start_fixture() -> tuple[dict[str, str], str]:
    d = tempfile.mkdtemp(prefix="nemorun-bench-slurm-", dir="/tmp")
    os.chmod(d, 0o755)
    env = {**os.environ, "SLURMFIX_DIR": d, "SLURMFIX_CTLD_PORT": "16877", "SLURMFIX_NODE_PORT0": "17061", "SLURMFIX_SSH_PORT": "2282"}
    subprocess.run(["bash", str(FIXTURE / "start.sh")], env=env, check=True, capture_output=True)
    values = dict(re.findall(r"(\w+)=(\S+)", (Path(d) / "env.sh").read_text()))
    return values, d


def one_submit(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nemorun", "executor=slurm", "task=hello", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "submitted as" in line:
            elapsed = time.perf_counter() - t0
            proc.wait()
            return elapsed
    raise RuntimeError(f"no job id printed: {proc.stderr.read() if proc.stderr else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="submissions per tunnel")
    n = parser.parse_args().n
    started = None
    values = {k: v for k, v in os.environ.items() if k.startswith(("SLURM_CONF", "SLURMFIX_"))}
    if "SLURM_CONF" not in os.environ:
        values, started = start_fixture()
    env = {**os.environ, "SLURM_CONF": values["SLURM_CONF"], "NEMORUN_HOME": tempfile.mkdtemp(prefix="nemorun-bench-home-")}
    ssh = ["executor/tunnel=ssh", f"executor.tunnel.host={values['SLURMFIX_SSH_HOST']}", f"executor.tunnel.port={values['SLURMFIX_SSH_PORT']}",
           f"executor.tunnel.user={values['SLURMFIX_SSH_USER']}", f"executor.tunnel.identity={values['SLURMFIX_SSH_KEY']}",
           f"executor.tunnel.known_hosts={values['SLURMFIX_KNOWN_HOSTS']}", f"executor.tunnel.job_dir={values['SLURMFIX_DIR']}/jobs/bench"]
    try:
        for label, args in (("local", []), ("ssh", ssh)):
            times = [one_submit(args, env) for _ in range(n)]
            print(f"{label:5s} tunnel: command -> job id  median {statistics.median(times):.3f} s  "
                  f"min {min(times):.3f} s  max {max(times):.3f} s  (n={n})")
    finally:
        if started:
            subprocess.run(["bash", str(FIXTURE / "stop.sh"), started], capture_output=True)


if __name__ == "__main__":
    main()
