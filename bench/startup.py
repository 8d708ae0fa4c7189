"""Start-up cost: a local dry run next to a minimal ``@hydra.main`` app and TorchX's CLI dry run.

"cold" composes with Hydra (``NEMORUN_COMPOSE_CACHE=0``); "cache hit" is the same command line
run again, served by nemorun.compose_cache. "torchx dry run" is TorchX's CLI dry run of the same
job (the example training function, same name and values, local scheduler):
``torchx run --dryrun -s local_cwd utils.python --name train -c "..."``; found on PATH or given
with ``--torchx PATH`` (e.g. a venv made with ``python -m venv --system-site-packages`` and
``pip install torchx==0.7.0``), else that row is left out and the report says so.

Every command runs with the same interpreter and the same byte-code cache: ``PYTHONPYCACHEPREFIX``
points at a private folder and ``PYTHONDONTWRITEBYTECODE`` is dropped for the children, so the
warm-up run writes ``.pyc`` files for every module, as ``pip install`` does. Without that, an
environment that sets ``PYTHONDONTWRITEBYTECODE`` (these machines do) recompiles the ~50 modules of
an editable checkout in every run while Hydra's and TorchX's come precompiled: it measured the
checkout's layout, not the start-up a user gets.

Prints the median wall time of each command over N interleaved runs (interleaving spreads machine
noise evenly) and the ratios, and the same for CPU time (user + system of the process, from
``wait4``): on a loaded machine wall time also counts the time a process waited for a core, CPU
time much less, so its ratios are the steadier ones. Goals (issue 18): cold <= 1.3x the minimal
app; cache hit <= the TorchX dry run.

    python bench/startup.py [--runs 15] [--torchx PATH]
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
from pathlib import Path

MINIMAL_APP = '''
import hydra
from omegaconf import DictConfig, OmegaConf

@hydra.main(config_path=None, config_name=None, version_base="1.3")
def main(cfg: DictConfig) -> None:
    print(OmegaConf.to_yaml(cfg))

main()
'''
TORCHX_JOB = "from nemorun.examples.train import train; train(steps=20, lr=0.1, seed=0)"
MINIMAL = "minimal @hydra.main app"
COLD = "nemorun dry run, cold"
HIT = "nemorun dry run, cache hit"
TORCHX = "torchx dry run"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--torchx", default=shutil.which("torchx"), help="the torchx command (default: on PATH)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "minimal_app.py"
        app.write_text(MINIMAL_APP)
        env = dict(os.environ, NEMORUN_HOME=str(Path(tmp) / "home"), PYTHONPYCACHEPREFIX=str(Path(tmp) / "pycache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("NEMORUN_COMPOSE_CACHE", None)
        commands = {
            "python -c 'import hydra'": [sys.executable, "-c", "import hydra"],
            MINIMAL: [
                sys.executable, str(app), "hydra.run.dir=.", "hydra.output_subdir=null",
                "hydra/job_logging=disabled", "hydra/hydra_logging=disabled",
            ],
            COLD: [sys.executable, "-m", "nemorun", "task=train", "dryrun=true"],
            HIT: [sys.executable, "-m", "nemorun", "task=train", "dryrun=true"],
        }
        if args.torchx:
            commands[TORCHX] = [args.torchx, "run", "--dryrun", "-s", "local_cwd", "utils.python", "--name", "train",
                                "-c", TORCHX_JOB]
        cold_env = dict(env, NEMORUN_COMPOSE_CACHE="0")
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}

        def run(name: str, argv: list[str]) -> float:
            """Run ``argv`` to the end; its CPU time (user + system) in seconds."""
            proc = subprocess.Popen(argv, cwd=tmp, env=cold_env if name == COLD else env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            stderr = proc.stderr.read() if proc.stderr else b""
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode:
                raise SystemExit(f"{name} failed (exit {proc.returncode}): {stderr.decode(errors='replace')[-2000:]}")
            return usage.ru_utime + usage.ru_stime

        for name, argv in commands.items():  # warm-up (page cache, .pyc, the compose cache entry)
            run(name, argv)
        for _ in range(args.runs):
            for name, argv in commands.items():
                t0 = time.perf_counter()
                cpu[name].append(run(name, argv))
                times[name].append(time.perf_counter() - t0)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    cpu_medians = {name: statistics.median(ts) for name, ts in cpu.items()}
    print(f"median of {args.runs} interleaved whole-process runs ({sys.executable}); load average "
          f"{os.getloadavg()[0]:.2f}")
    for name, med in medians.items():
        print(f"{name:28s} median {med * 1000:7.1f} ms  (min {min(times[name]) * 1000:.1f}, runs {len(times[name])})"
              f"  cpu {cpu_medians[name] * 1000:7.1f} ms")
    base, cpu_base = medians[MINIMAL], cpu_medians[MINIMAL]
    for name in (COLD, HIT):
        print(f"{name} / minimal Hydra app: {medians[name] / base:.2f}x  (cpu {cpu_medians[name] / cpu_base:.2f}x; "
              "goal for cold <= 1.30x)")
    if TORCHX in medians:
        print(f"{HIT} / torchx dry run: {medians[HIT] / medians[TORCHX]:.2f}x  (goal <= 1.00x)")
    else:
        print("torchx dry run: not measured (no torchx on PATH; pass --torchx PATH)")


if __name__ == "__main__":
    main()
