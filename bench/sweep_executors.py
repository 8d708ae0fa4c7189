"""Non-array dry-run sweeps on every executor: wall, CPU and peak memory at 1,000 and 10,000 jobs.

Issue 18 was measured on Slurm job arrays; a sweep on any other executor renders and validates
every job on its own (a TrainJob + ConfigMap per job, a SkyPilot task, a Lepton/Run:ai JSON body).
Each run is the real CLI in a fresh process::

    python -m nemorun -m executor=E <E's required values> task=train task.params.lr=range(0,N) dryrun=true

with a private PYTHONPYCACHEPREFIX and a fresh NEMORUN_HOME. Runs are interleaved (every executor
once per round, the order rotating per round) so all see the same machine state; medians are
printed, with the local executor as the reference column (``x local`` = median wall / local's).
Peak memory is the child's max RSS (``resource.getrusage(RUSAGE_CHILDREN)`` in a fresh helper
process per run). Goals: every executor's 1,000-job sweep within ~2x local's, 10,000 jobs
<= 10 s, peak memory at 10,000 within ~30 MB of 1,000.

``--before DIR``: DIR holds another copy of the ``nemorun`` package (e.g. the code before a
change, templates and conf inside it); each executor then also runs with ``PYTHONPATH=DIR`` in the
same rounds (rows ``E@before``), so before/after are compared on the same machine state.

    python bench/sweep_executors.py [--sizes 1000,10000] [--runs 3] [--executors local,kubeflow,...] [--before DIR]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import measure_command  # noqa: E402  (bench/sweep.py: one helper process per measurement)

# What each executor needs to compose (the same values as tests/test_conformance.py's REQUIRED,
# with images that exist on public registries; a dry run never pulls them).
REQUIRED: dict[str, list[str]] = {
    "local": [],
    "slurm": [],
    "docker": ["executor.container_image=python:3.11"],
    "kubeflow": ["executor.image=python:3.11"],
    "skypilot": [],
    "lepton": ["executor.resource_shape=cpu.small", "executor.container_image=python:3.11", "executor.node_group_id=ng-1"],
    "dgxcloud": ["executor.base_url=https://tenant.example.com/api/v1", "executor.app_id=ci", "executor.app_secret_env=DGX_APP_SECRET",
                 "executor.project_name=team-a", "executor.container_image=python:3.11",
                 "executor.pvcs=[{claim_name: nemo-pvc, path: /nemo-workspace}]", "executor.pvc_nemo_run_dir=/nemo-workspace/nemo_run"],
}  # fmt: skip


def command(executor: str, size: int) -> list[str]:
    return [sys.executable, "-m", "nemorun", "-m", f"executor={executor}", *REQUIRED[executor], "task=train",
            f"task.params.lr=range(0,{size})", "dryrun=true"]


def measure(executor: str, size: int, env: dict[str, str], tree: str | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="nemorun-bench-home-") as home:
        extra = {"PYTHONPATH": tree} if tree else {}
        return measure_command(command(executor, size), {**env, "NEMORUN_HOME": home, **extra}, cwd=tree)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--executors", default=",".join(REQUIRED))
    parser.add_argument("--before", help="a folder holding another nemorun package, timed in the same rounds")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    executors = [e for e in args.executors.split(",") if e]
    if "local" not in executors:
        executors.insert(0, "local")
    unknown = sorted(set(executors) - set(REQUIRED))
    if unknown:
        sys.exit(f"bench: unknown executors {unknown}; known: {', '.join(REQUIRED)}")
    with tempfile.TemporaryDirectory(prefix="nemorun-bench-pyc-") as pyc:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": pyc, "DGX_APP_SECRET": "bench-secret"}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        trees: dict[str, str | None] = {"": None, **({"@before": os.path.abspath(args.before)} if args.before else {})}
        rows = [(e, t) for e in executors for t in trees]
        for e, t in rows:  # warm the bytecode caches outside the timed runs
            measure(e, 2, env, trees[t])
        print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.runs} interleaved runs",
              flush=True)
        print(f"{'executor':>16} " + " ".join(f"{f'{n} wall s':>12} {'cpu s':>6} {'MB':>6} {'x local':>7}" for n in sizes)
              + f" {'MB delta':>9}", flush=True)
        results: dict[tuple[str, int], list[dict[str, float]]] = {(e + t, n): [] for e, t in rows for n in sizes}
        for i in range(args.runs):
            for size in sizes:
                for e, t in rows[i % len(rows):] + rows[:i % len(rows)]:
                    results[e + t, size].append(measure(e, size, env, trees[t]))
        wall = {k: statistics.median(r["wall"] for r in v) for k, v in results.items()}
        for e, t in rows:
            cells = []
            for n in sizes:
                runs = results[e + t, n]
                cells.append(f"{wall[e + t, n]:>12.2f} {statistics.median(r['cpu'] for r in runs):>6.2f} "
                             f"{max(r['maxrss_kb'] for r in runs) / 1024:>6.1f} {wall[e + t, n] / wall['local', n]:>7.2f}")
            peaks = [max(r["maxrss_kb"] for r in results[e + t, n]) / 1024 for n in sizes]
            print(f"{e + t:>16} " + " ".join(cells) + f" {peaks[-1] - peaks[0]:>9.1f}", flush=True)
        print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; wall/cpu = medians, "
              "MB = peak RSS (max over runs), x local = wall / local's wall, MB delta = peak at the largest size - smallest")


if __name__ == "__main__":
    main()
