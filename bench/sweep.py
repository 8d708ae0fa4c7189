"""Dry-run sweeps of 20, 200, 1,000 and 10,000 jobs: wall time and peak memory.

Each size runs the real CLI in a fresh process (``python -m nemorun -m task=train
task.params.lr=range(0,N) dryrun=true``, local executor): every job is composed (once, then
patched), compiled, rendered and validated; the terminal gets a summary and the first job.
Peak memory is the child's max RSS (``resource.getrusage(RUSAGE_CHILDREN)``, measured in a
fresh helper process per run so sizes do not mask each other).
CPU seconds (user + system of the child) are printed too: on a shared machine they show the
cost when wall time is inflated by other load. Goal on a 2-core machine: 1,000 jobs <= 3 s, 10,000 jobs <= 20 s, memory flat as jobs grow.

``--compare-nemo-run`` also times NeMo-Run's Experiment dry run of the same jobs
(bench/nemo_run_sweep.py: N ``run.Partial`` tasks on a ``LocalExecutor``, every job packaged and
dry-run) in the same run, interleaved with nemorun's runs (alternating which goes first) so both
see the same machine state, and prints both and the ratio NeMo-Run / nemorun. NeMo-Run lives in
its own venv (default ~/.cache/nemorun-bench/nemo-run-venv, built on first use with
``python -m venv`` + pip, about 2 minutes): installed into our interpreter it would replace the
``nemorun`` console script and pin omegaconf 2.4. The flag is on by default when that venv exists
or can be built; ``--no-compare-nemo-run`` (alias ``--no-nemo-run``) gives the nemorun-only table.
NeMo-Run runs ``--nemo-run-large-runs`` times (default 1) above 1,000 jobs, and is skipped there
when 1,000 jobs took over ``--nemo-run-cap`` seconds (default 60).

    python bench/sweep.py [--sizes 20,200,1000,10000] [--runs 3] [--render-dir] [--no-nemo-run]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

NEMO_RUN_VENV = Path("~/.cache/nemorun-bench/nemo-run-venv")
# leptonai 0.47 lacks leptonai.api.v1, which nemo-run 0.11.1 imports eagerly (notes/hydra.md §5)
NEMO_RUN_REQUIREMENTS = ("nemo-run==0.11.1", "leptonai<0.47")
NEMO_RUN_SCRIPT = Path(__file__).resolve().parent / "nemo_run_sweep.py"

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
    return measure_command(cmd, env)


def measure_command(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _CHILD, *cmd], env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"bench: {' '.join(cmd[:4])} ... failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)


def nemo_run_python(venv: Path) -> tuple[Path | None, str]:
    """NeMo-Run's interpreter in its own venv, built on first use; (None, why) when unusable."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import nemo_run"], capture_output=True).returncode == 0:
        return python, f"NeMo-Run venv: {venv}"
    print(f"# building NeMo-Run's venv at {venv} (python -m venv + pip install {' '.join(NEMO_RUN_REQUIREMENTS)}; "
          "about 2 minutes, once)", flush=True)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(venv / "bin" / "pip"), "install", "-q", *NEMO_RUN_REQUIREMENTS],
             [str(python), "-c", "import nemo_run"]]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True)
        if proc.returncode:
            lines = (proc.stderr or proc.stdout).strip().splitlines() or ["(no output)"]
            return None, f"could not build NeMo-Run's venv at {venv} ({' '.join(step[:3])}): {lines[-1]}"
    return python, f"NeMo-Run venv: {venv} (built now)"


def compare(sizes: list[int], runs: int, large_runs: int, cap: float, python: Path, env: dict[str, str],
            nemo_env: dict[str, str], render_dir: str | None) -> None:
    print(f"{'jobs':>6} {'nemorun s':>9} {'nemorun MB':>10} {'NeMo-Run s':>10} {'NeMo-Run MB':>11} {'ratio':>6} "
          f"{'cpu ratio':>9}", flush=True)
    slow_at: int | None = None  # smallest size >= 1,000 where NeMo-Run took over `cap` seconds
    for size in sizes:
        skip = slow_at is not None and size > slow_at
        nemo_runs = 0 if skip else (runs if size <= 1000 else min(runs, large_runs))
        ours: list[dict[str, float]] = []
        theirs: list[dict[str, float]] = []
        for i in range(runs):  # interleaved, alternating who goes first: same machine state for both
            order = ["ours", "theirs"] if i % 2 == 0 else ["theirs", "ours"]
            for who in order:
                if who == "ours":
                    ours.append(measure(size, env, render_dir))
                elif len(theirs) < nemo_runs:
                    theirs.append(measure_command([str(python), str(NEMO_RUN_SCRIPT), str(size)], nemo_env))
        wall = statistics.median(r["wall"] for r in ours)
        row = f"{size:>6} {wall:>9.2f} {max(r['maxrss_kb'] for r in ours) / 1024:>10.1f}"
        if theirs:
            their_wall = statistics.median(r["wall"] for r in theirs)
            cpu_ratio = statistics.median(r["cpu"] for r in theirs) / statistics.median(r["cpu"] for r in ours)
            row += (f" {their_wall:>10.2f} {max(r['maxrss_kb'] for r in theirs) / 1024:>11.1f} {their_wall / wall:>6.1f}"
                    f" {cpu_ratio:>9.1f}")
            if len(theirs) < runs:
                row += f"   (NeMo-Run: {len(theirs)} run{'s' if len(theirs) > 1 else ''})"
            if size >= 1000 and their_wall > cap and slow_at is None:
                slow_at = size
        else:
            row += f" {'skipped':>10}   (NeMo-Run took over {cap:.0f} s at {slow_at} jobs)"
        print(row, flush=True)
    print("# ratio = NeMo-Run / nemorun median wall time; cpu ratio = same for user+system CPU seconds; "
          "MB = peak RSS (max over runs)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="20,200,1000,10000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--render-dir", action="store_true", help="also write every job's artifacts")
    parser.add_argument("--compare-nemo-run", "--nemo-run", action=argparse.BooleanOptionalAction, default=None,
                        help="also time NeMo-Run's Experiment dry run (default: on when its venv exists or can be "
                             "built); --no-compare-nemo-run / --no-nemo-run: nemorun alone")
    parser.add_argument("--nemo-run-venv", type=Path, default=NEMO_RUN_VENV)
    parser.add_argument("--nemo-run-large-runs", type=int, default=1, help="NeMo-Run runs per size above 1,000 jobs")
    parser.add_argument("--nemo-run-cap", type=float, default=60.0,
                        help="skip NeMo-Run above 1,000 jobs when 1,000 took longer (seconds)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    python = None
    if args.compare_nemo_run is not False:
        python, note = nemo_run_python(args.nemo_run_venv.expanduser())
        print(f"# {note}", flush=True)
        if python is None and args.compare_nemo_run:
            sys.exit(f"bench: --compare-nemo-run: {note}")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NEMORUN_HOME=os.path.join(tmp, "home"))
        if python is not None:
            # NeMo-Run reads NEMORUN_HOME too (its default is ~/.nemo_run): a home of its own
            nemo_env = dict(os.environ, NEMORUN_HOME=os.path.join(tmp, "nemo-run-home"))
            compare(sizes, args.runs, args.nemo_run_large_runs, args.nemo_run_cap, python, env, nemo_env,
                    os.path.join(tmp, "render") if args.render_dir else None)
            return
        print(f"{'jobs':>6} {'median s':>9} {'min s':>7} {'cpu s':>6} {'ms/job':>7} {'peak MB':>8} {'lines out':>9}")
        for size in sizes:
            results = [measure(size, env, os.path.join(tmp, "render") if args.render_dir else None) for _ in range(args.runs)]
            walls = [r["wall"] for r in results]
            peak = max(r["maxrss_kb"] for r in results) / 1024
            cpu = statistics.median(r["cpu"] for r in results)
            print(f"{size:>6} {statistics.median(walls):>9.2f} {min(walls):>7.2f} {cpu:>6.2f} {1000 * statistics.median(walls) / size:>7.2f} "
                  f"{peak:>8.1f} {results[0]['stdout_lines']:>9}", flush=True)


if __name__ == "__main__":
    main()
