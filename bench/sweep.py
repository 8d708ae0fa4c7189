"""Dry-run sweeps of 20, 200, 1,000 and 10,000 jobs: nemorun vs NeMo-Run vs the floor, one run.

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

Issue 18's goal line is measured in the same run, interleaved with the rest (``--no-array`` leaves
it out): ``array`` = the same sweep as ONE Slurm job array with ``render_dir``
(``executor=slurm ... dryrun=true render_dir=DIR``: one script and one task table written), and
``floor`` = the least any tool must do for that sweep (bench/sweep_floor.py: start Python, compose
once, render and write N one-line scripts). Goals: array <= 1.3x floor and NeMo-Run >= 20x array
at 1,000 jobs; 10,000 jobs <= 10 s with peak memory within 10 MB of the 1,000-job run.

    python bench/sweep.py [--sizes 20,200,1000,10000] [--runs 3] [--render-dir] [--no-nemo-run] [--no-array]
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

# The physical floor of a Slurm sweep dry run with render_dir (see bench/sweep_floor.py): start
# Python, compose nemorun's config ONCE with Hydra's compose API, render N one-line Jinja
# templates and write N files; no validation, no checks, no records.
FLOOR = r'''
import os, sys
from jinja2 import Template
from nemorun.compose import compose_files, hydra_context  # Hydra's compose API on nemorun's config tree

n, out = int(sys.argv[1]), sys.argv[2]
with hydra_context():
    cfg = compose_files(["executor=slurm", "task=train"])
template = Template("#!/bin/bash\n#SBATCH --job-name={{ name }}\nsrun python -m train --lr={{ lr }}\n")
os.makedirs(out, exist_ok=True)
name = cfg.task.name
for i in range(n):
    with open(os.path.join(out, f"{i}.sh"), "w") as f:
        f.write(template.render(name=f"{name}-{i}", lr=i))
'''


def array_command(size: int, out: str) -> list[str]:
    """The issue's goal line: the sweep as ONE Slurm job array, its script and table written to ``out``."""
    return [sys.executable, "-m", "nemorun", "-m", "executor=slurm", "task=train", f"task.params.lr=range(0,{size})",
            "dryrun=true", f"render_dir={out}"]


def floor_command(floor: Path, size: int, out: str) -> list[str]:
    return [sys.executable, str(floor), str(size), out]

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


def measure_command(cmd: list[str], env: dict[str, str], cwd: str | None = None) -> dict[str, float]:
    """Wall, CPU and peak RSS of ``cmd`` run by a fresh helper process (used by the other sweep benches too)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, *cmd], env=env, capture_output=True, text=True, cwd=cwd)
    if out.returncode:
        sys.exit(f"bench: {' '.join(cmd[:6])} ... failed: {out.stderr.strip()[-2000:]}")
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


def _median(results: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in results)


def _peak_mb(results: list[dict[str, float]]) -> float:
    return max(r["maxrss_kb"] for r in results) / 1024


def compare(sizes: list[int], runs: int, large_runs: int, cap: float, python: Path | None, env: dict[str, str],
            nemo_env: dict[str, str], render_dir: str | None, floor: Path | None, tmp: str) -> None:
    """Every tool's runs interleaved, the order rotating per run, so all see the same machine state."""
    header = f"{'jobs':>6} {'nemorun s':>9} {'MB':>6}"
    if floor is not None:
        header += f" {'array s':>8} {'MB':>6} {'floor s':>8} {'MB':>6} {'array/floor':>11}"
    if python is not None:
        header += f" {'NeMo-Run s':>10} {'MB':>6} {'NR/nemorun':>10}" + (f" {'NR/array':>8}" if floor is not None else "")
    print(header, flush=True)
    slow_at: int | None = None  # smallest size >= 1,000 where NeMo-Run took over `cap` seconds
    for size in sizes:
        skip = python is None or (slow_at is not None and size > slow_at)
        nemo_runs = 0 if skip else (runs if size <= 1000 else min(runs, large_runs))
        results: dict[str, list[dict[str, float]]] = {"ours": [], "array": [], "floor": [], "theirs": []}
        commands = {
            "ours": lambda i: measure(size, env, render_dir),
            "array": lambda i: measure_command(array_command(size, f"{tmp}/array-{size}-{i}"), env),
            "floor": lambda i: measure_command(floor_command(floor, size, f"{tmp}/floor-{size}-{i}"), env),  # type: ignore[arg-type]
            "theirs": lambda i: measure_command([str(python), str(NEMO_RUN_SCRIPT), str(size)], nemo_env),
        }
        who_runs = ["ours", *(["array", "floor"] if floor is not None else []), *(["theirs"] if nemo_runs else [])]
        for i in range(runs):
            for who in who_runs[i % len(who_runs):] + who_runs[:i % len(who_runs)]:
                if who != "theirs" or len(results["theirs"]) < nemo_runs:
                    results[who].append(commands[who](i))
        ours, array, floor_r, theirs = (results[k] for k in ("ours", "array", "floor", "theirs"))
        row = f"{size:>6} {_median(ours, 'wall'):>9.2f} {_peak_mb(ours):>6.1f}"
        if floor is not None:
            row += (f" {_median(array, 'wall'):>8.2f} {_peak_mb(array):>6.1f} {_median(floor_r, 'wall'):>8.2f}"
                    f" {_peak_mb(floor_r):>6.1f} {_median(array, 'wall') / _median(floor_r, 'wall'):>11.2f}")
        if theirs:
            their_wall = _median(theirs, "wall")
            row += f" {their_wall:>10.2f} {_peak_mb(theirs):>6.1f} {their_wall / _median(ours, 'wall'):>10.1f}"
            if floor is not None:
                row += f" {their_wall / _median(array, 'wall'):>8.1f}"
            if len(theirs) < runs:
                row += f"   (NeMo-Run: {len(theirs)} run{'s' if len(theirs) > 1 else ''})"
            if size >= 1000 and their_wall > cap and slow_at is None:
                slow_at = size
        elif python is not None:
            row += f" {'skipped':>10}   (NeMo-Run took over {cap:.0f} s at {slow_at} jobs)"
        cpu = {k: _median(v, "cpu") for k, v in results.items() if v}
        row += "   cpu s: " + " ".join(f"{k}={v:.2f}" for k, v in cpu.items())
        print(row, flush=True)
    print("# nemorun = the local sweep (like NeMo-Run's LocalExecutor run); array = the Slurm job array with render_dir; "
          "floor = bench/sweep_floor.py's script; NR/x = NeMo-Run / x median wall time; MB = peak RSS (max over runs); "
          "cpu s = median user+system CPU seconds")


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
    parser.add_argument("--array", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the Slurm job-array sweep with render_dir and the floor script (issue 18's goal line)")
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
        if python is not None or args.array:
            # NeMo-Run reads NEMORUN_HOME too (its default is ~/.nemo_run): a home of its own
            nemo_env = dict(os.environ, NEMORUN_HOME=os.path.join(tmp, "nemo-run-home"))
            floor = None
            if args.array:
                floor = Path(tmp) / "floor.py"
                floor.write_text(FLOOR)
            compare(sizes, args.runs, args.nemo_run_large_runs, args.nemo_run_cap, python, env, nemo_env,
                    os.path.join(tmp, "render") if args.render_dir else None, floor, tmp)
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
