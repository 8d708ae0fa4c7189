"""``nemorun --help`` and TAB completion: median wall time of whole processes (issue 18 goal: 0.3 s).

Each case runs as the user's shell runs it (a new process; a TAB press runs
``COMP_LINE='...' nemorun -sc query=bash``), interleaved over N rounds so machine noise spreads
evenly, in a private NEMORUN_HOME:

- "hydra": the cache off (``NEMORUN_COMPOSE_CACHE=0``), i.e. Hydra composing, as before issue 18
  (``exp`` lines have no such row: Hydra answered them with a parser error);
- "warm": served from nemorun.quick's cache (one untimed run first fills it);
- two entry points: ``nemorun`` as installed (console script ``nemorun.cli:main``, which imports
  the whole CLI before it reaches the fast path) and ``nemorun.quick:main`` (the fast path first,
  the CLI only on a miss), started the way a console script starts it.

Like bench/startup.py, every process shares a private byte-code cache (``PYTHONPYCACHEPREFIX``,
``PYTHONDONTWRITEBYTECODE`` dropped): the untimed first runs write the ``.pyc`` files an installed
package has, so a checkout in an environment that sets ``PYTHONDONTWRITEBYTECODE`` is not timed
recompiling its own modules on every key press.

    python bench/help_tab.py [--runs 11]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

QUERIES = {
    "--help": (["--help"], None),
    "TAB: nemorun <TAB>": (["-sc", "query=bash"], "nemorun "),
    "TAB: executor=slurm executor.par<TAB>": (["-sc", "query=bash"], "nemorun executor=slurm executor.par"),
    "TAB: task=train task.params.<TAB>": (["-sc", "query=bash"], "nemorun task=train task.params."),
    "TAB: exp show <TAB>": (["-sc", "query=bash"], "nemorun exp show "),
}
QUICK_ENTRY = "import sys; sys.argv[0] = 'nemorun'; from nemorun.quick import main; sys.exit(main())"


def _entries() -> dict[str, list[str]]:
    installed = shutil.which("nemorun")
    out = {"quick entry": [sys.executable, "-c", QUICK_ENTRY]}
    if installed:
        out["installed nemorun"] = [installed]
        real = os.path.join(os.path.dirname(sys.executable), "nemorun")
        if os.path.exists(real) and os.path.realpath(real) != os.path.realpath(installed):
            out["installed (no pyenv shim)"] = [real]
    return out


def _run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        base = {**os.environ, "NEMORUN_HOME": home, "PYTHONPYCACHEPREFIX": os.path.join(home, "pycache")}
        base.pop("NEMORUN_COMPOSE_CACHE", None)
        base.pop("PYTHONDONTWRITEBYTECODE", None)
        cases: dict[tuple[str, str, str], tuple[list[str], dict[str, str]]] = {}
        for label, (argv, line) in QUERIES.items():
            env = {**base, **({"COMP_LINE": line} if line is not None else {})}
            for entry, cmd in _entries().items():
                cases[(label, entry, "warm")] = ([*cmd, *argv], env)
            if label.startswith("TAB: exp"):
                continue  # never reaches Hydra: nemorun.quick answers `exp` lines with the cache on or off
            cases[(label, "installed nemorun" if shutil.which("nemorun") else "quick entry", "hydra")] = (
                [*_entries().get("installed nemorun", _entries()["quick entry"]), *argv], {**env, "NEMORUN_COMPOSE_CACHE": "0"})
        for cmd, env in cases.values():  # fill the caches (untimed)
            _run(cmd, env)
        times: dict[tuple[str, str, str], list[float]] = {k: [] for k in cases}
        for _ in range(args.runs):
            for key, (cmd, env) in cases.items():
                times[key].append(_run(cmd, env))
    print(f"median of {args.runs} whole-process runs (s); goal <= 0.30")
    print(f"{'query':42} {'entry':28} {'path':6} {'median':>7} {'min':>7}")
    for (label, entry, path), ts in sorted(times.items()):
        print(f"{label:42} {entry:28} {path:6} {statistics.median(ts):7.3f} {min(ts):7.3f}")


if __name__ == "__main__":
    main()
