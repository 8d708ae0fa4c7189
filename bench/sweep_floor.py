"""A Slurm array sweep dry run with ``render_dir`` next to its physical floor: wall time and peak memory.

nemorun: ``python -m nemorun -m executor=slurm task=train task.params.lr=range(0,N) dryrun=true
render_dir=DIR`` in a fresh process (every job composed once then patched, type-checked against
the function's signature, ONE array script rendered and validated, one task table written).

The floor: a script doing the least any tool must do for the same sweep — start Python, compose
nemorun's config ONCE with Hydra's compose API, render N Jinja templates (one line per job) and
write N files — with nothing else (no validation, no checks, no records). Goals (issue #18): at
1,000 jobs nemorun <= 1.3x the floor; 10,000 jobs <= 10 s with peak memory within 10 MB of the
1,000-job run.

    python bench/sweep_floor.py [--sizes 1000,10000] [--runs 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import FLOOR, measure_command  # noqa: E402  (bench/sweep.py: the floor script, one child process per measurement)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        floor = Path(tmp) / "floor.py"
        floor.write_text(FLOOR)
        env = dict(os.environ, NEMORUN_HOME=os.path.join(tmp, "home"))
        print(f"{'jobs':>6} {'nemorun s':>9} {'floor s':>8} {'ratio':>6} {'cpu ratio':>9} {'nemorun MB':>10} {'floor MB':>8}")
        for size in [int(s) for s in args.sizes.split(",")]:
            ours: list[dict[str, float]] = []
            theirs: list[dict[str, float]] = []
            for run in range(args.runs):  # interleaved: both see the same machine state
                ours.append(measure_command(
                    [sys.executable, "-m", "nemorun", "-m", "executor=slurm", "task=train", f"task.params.lr=range(0,{size})",
                     "dryrun=true", f"render_dir={tmp}/ours-{size}-{run}"], env))
                theirs.append(measure_command([sys.executable, str(floor), str(size), f"{tmp}/floor-{size}-{run}"], env))
            wall, floor_wall = statistics.median(r["wall"] for r in ours), statistics.median(r["wall"] for r in theirs)
            cpu_ratio = statistics.median(r["cpu"] for r in ours) / statistics.median(r["cpu"] for r in theirs)
            print(f"{size:>6} {wall:>9.2f} {floor_wall:>8.2f} {wall / floor_wall:>6.2f} {cpu_ratio:>9.2f} "
                  f"{max(r['maxrss_kb'] for r in ours) / 1024:>10.1f} {max(r['maxrss_kb'] for r in theirs) / 1024:>8.1f}", flush=True)
    print("# ratio = nemorun / floor median wall time (cpu ratio: user+system CPU seconds); MB = peak RSS, max over runs")


if __name__ == "__main__":
    main()
