"""Start-up cost: a local dry run next to a minimal ``@hydra.main`` app and ``import hydra``.

"cold" composes with Hydra (``NEMORUN_COMPOSE_CACHE=0``); "cache hit" is the same command line
run again, served by nemorun.compose_cache.

Prints the median wall time of each command over N interleaved runs (interleaving spreads machine
noise evenly) and the ratio dry run / minimal Hydra app. Goal: at most 1.3.

    python bench/startup.py [--runs 15]
"""
from __future__ import annotations

import argparse
import os
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "minimal_app.py"
        app.write_text(MINIMAL_APP)
        env = dict(os.environ, NEMORUN_HOME=str(Path(tmp) / "home"))
        commands = {
            "python -c 'import hydra'": [sys.executable, "-c", "import hydra"],
            "minimal @hydra.main app": [
                sys.executable, str(app), "hydra.run.dir=.", "hydra.output_subdir=null",
                "hydra/job_logging=disabled", "hydra/hydra_logging=disabled",
            ],
            "nemorun dry run, cold": [sys.executable, "-m", "nemorun", "task=train", "dryrun=true"],
            "nemorun dry run, cache hit": [sys.executable, "-m", "nemorun", "task=train", "dryrun=true"],
        }
        cold_env = dict(env, NEMORUN_COMPOSE_CACHE="0")
        times: dict[str, list[float]] = {name: [] for name in commands}
        def run(name: str, argv: list[str]) -> None:
            subprocess.run(argv, cwd=tmp, env=cold_env if "cold" in name else env, check=True, capture_output=True)

        for name, argv in commands.items():  # warm-up (page cache, .pyc, the compose cache entry)
            run(name, argv)
        for _ in range(args.runs):
            for name, argv in commands.items():
                t0 = time.perf_counter()
                run(name, argv)
                times[name].append(time.perf_counter() - t0)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, med in medians.items():
        print(f"{name:28s} median {med * 1000:7.1f} ms  (min {min(times[name]) * 1000:.1f}, runs {len(times[name])})")
    base = medians["minimal @hydra.main app"]
    for name in ("nemorun dry run, cold", "nemorun dry run, cache hit"):
        print(f"{name} / minimal Hydra app: {medians[name] / base:.2f}x  (goal <= 1.30x)")


if __name__ == "__main__":
    main()
