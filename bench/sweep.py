"""Dry-run sweeps of 20, 200, 1,000 and 10,000 jobs: wall time and peak memory.

Each size runs the real CLI in a fresh process (``python -m nemorun -m task=train
task.params.lr=range(0,N) dryrun=true``, local executor): every job is composed (once, then
patched), compiled, rendered and validated; the terminal gets a summary and the first job.
Peak memory is the child's max RSS (``resource.getrusage(RUSAGE_CHILDREN)``, measured in a
fresh helper process per run so sizes do not mask each other).
CPU seconds (user + system of the child) are printed too: on a shared machine they show the
cost when wall time is inflated by other load. Goal on a 2-core machine: 1,000 jobs <= 3 s, 10,000 jobs <= 20 s, memory flat as jobs grow.

    python bench/sweep.py [--sizes 20,200,1000,10000] [--runs 3] [--render-dir]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - t
if proc.returncode:
    sys.exit(proc.stderr)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall": wall, "maxrss_kb": ru.ru_maxrss, "cpu": ru.ru_utime + ru.ru_stime,
                  "stdout_lines": proc.stdout.count("\n")}))
"""


def measure(size: int, env: dict[str, str], render_dir: str | None) -> dict[str, float]:
    cmd = [sys.executable, "-m", "nemorun", "-m", "task=train", f"task.params.lr=range(0,{size})", "dryrun=true"]
    if render_dir:
        cmd.append(f"render_dir={render_dir}/{size}")
    out = subprocess.run([sys.executable, "-c", _CHILD, *cmd], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="20,200,1000,10000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--render-dir", action="store_true", help="also write every job's artifacts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NEMORUN_HOME=os.path.join(tmp, "home"))
        print(f"{'jobs':>6} {'median s':>9} {'min s':>7} {'cpu s':>6} {'ms/job':>7} {'peak MB':>8} {'lines out':>9}")
        for size in [int(s) for s in args.sizes.split(",")]:
            results = [measure(size, env, os.path.join(tmp, "render") if args.render_dir else None) for _ in range(args.runs)]
            walls = [r["wall"] for r in results]
            peak = max(r["maxrss_kb"] for r in results) / 1024
            cpu = statistics.median(r["cpu"] for r in results)
            print(f"{size:>6} {statistics.median(walls):>9.2f} {min(walls):>7.2f} {cpu:>6.2f} {1000 * statistics.median(walls) / size:>7.2f} "
                  f"{peak:>8.1f} {results[0]['stdout_lines']:>9}", flush=True)


if __name__ == "__main__":
    main()
