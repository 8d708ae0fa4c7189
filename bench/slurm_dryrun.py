"""Dry run of a 1,000-task Slurm array: wall time, CPU time and the files it writes.

Why: a value-only sweep on Slurm becomes ONE array job (one ``sbatch.sh``, one task table), so
its dry run should cost about one job, not a thousand. Each run is the real CLI in a fresh
process with a fresh NEMORUN_HOME and ``render_dir`` (cold start included):

    python -m nemorun -m executor=slurm task=train task.params.lr=range(0,N) dryrun=true render_dir=DIR

and counts every file written under NEMORUN_HOME and DIR afterwards. It also times a
3-component heterogeneous job (an experiment of three tasks sharing one ``allocation`` with
different resources, written to a temporary ``--config-dir``) and a single job for scale.

    python bench/slurm_dryrun.py [--tasks 1000] [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


# three tasks in ONE allocation with different resources: one heterogeneous job of 3 components
HET3 = """\
defaults:
  - /_schema_experiment@_here_
  - _self_
name: het3
tasks:
  trainer:
    allocation: trio
    overrides: [executor=slurm, task=ddp, launcher=torchrun, executor.nodes=2, executor.gpus_per_node=8]
  server:
    allocation: trio
    overrides: [executor=slurm, task=hello, task.name=server, executor.cpus_per_task=4]
  monitor:
    allocation: trio
    overrides: [executor=slurm, task=hello, task.name=monitor, executor.nodes=3]
"""


def _files(*roots: Path) -> tuple[int, int]:
    """(number of files, total bytes) under the roots."""
    n = size = 0
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file():
                n, size = n + 1, size + p.stat().st_size
    return n, size


def run_once(args: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="nemorun-bench-") as tmp:
        home, out = Path(tmp) / "home", Path(tmp) / "render"
        env = {**os.environ, "NEMORUN_HOME": str(home)}
        cmd = [sys.executable, "-m", "nemorun", *args, "dryrun=true", f"render_dir={out}"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed (rc={proc.returncode}):\n{proc.stderr}")
        files, size = _files(home, out)
        return {"wall": wall, "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
                "files": files, "bytes": size}


def report(name: str, args: list[str], runs: int) -> None:
    results = [run_once(args) for _ in range(runs)]
    wall = statistics.median(r["wall"] for r in results)
    cpu = statistics.median(r["cpu"] for r in results)
    last = results[-1]
    print(f"{name:<28} wall {wall:6.2f} s (median of {runs})  cpu {cpu:6.2f} s  files {int(last['files']):>5}  bytes {int(last['bytes']):>9}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    opts = ap.parse_args()
    report(f"slurm array of {opts.tasks}", ["-m", "executor=slurm", "task=train", f"task.params.lr=range(0,{opts.tasks})"], opts.runs)
    report("slurm single job", ["executor=slurm", "task=train"], opts.runs)
    with tempfile.TemporaryDirectory(prefix="nemorun-bench-conf-") as conf:
        (Path(conf) / "experiment").mkdir()
        (Path(conf) / "experiment" / "het3.yaml").write_text(HET3)
        report("slurm hetjob, 3 components", ["--config-dir", conf, "experiment=het3"], opts.runs)


if __name__ == "__main__":
    main()
