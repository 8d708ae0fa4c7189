"""NeMo-Run's side of bench/sweep.py: an Experiment dry run of the same N-job sweep.

Runs inside NeMo-Run's own virtual environment (bench/sweep.py builds it; never the system
interpreter: nemo-run ships a ``nemorun`` console script and pins omegaconf 2.4):

    ~/.cache/nemorun-bench/nemo-run-venv/bin/python bench/nemo_run_sweep.py N

What is compared. nemorun's sweep is ``task=train task.params.lr=range(0,N)`` on the *local*
executor: N function tasks (``nemorun.examples.train.train`` with steps, lr, seed) that differ only
in ``lr``, each rendered to ``launch.sh`` + ``function.yaml`` and validated, the first one printed.
Here: ONE ``run.Experiment`` of N jobs, each ``run.Partial(train, steps=20, lr=i, seed=0)`` on a
``run.LocalExecutor`` — the same executor kind and the same task kind (a Python function plus
values, not a shell script), differing only in ``lr``. ``exp.dryrun(log=False)`` runs
NeMo-Run's whole dry-run path for every job: ``_prepare`` packages each one (fiddle-serialises
the task and the executor into the job's ``configs/`` folder and builds the TorchX AppDef) and
``launch(dryrun=True)`` asks TorchX's local scheduler for each job's dry-run request. With
``log=False`` nothing is printed; afterwards this script prints, like nemorun, a short summary
and the first job's artifacts, and checks that every job got its dry-run info and config file.
Why not ``SlurmExecutor`` + ``LocalTunnel`` + ``run.Packager()``: that renders an sbatch script
per job, i.e. a different executor kind from nemorun's local sweep (nemorun's Slurm sweep is
one job array instead), so the local pair is the like-for-like comparison.

``train`` below stands in for ``nemorun.examples.train.train`` (same signature; nemorun is not
installed in NeMo-Run's venv, and a dry run never calls it). It is taken from this module
imported by name, not from ``__main__``, so fiddle records an importable path.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

# a dry run prints at most this many job lines, then the first job (as nemorun's does)
SUMMARY_LINES = 20


def train(steps: int = 20, lr: float = 0.1, seed: int = 0, sleep: float = 0.02) -> int:
    """Signature of ``nemorun.examples.train.train``; never run by a dry run."""
    raise NotImplementedError("bench stand-in: only dry runs use it")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("jobs", type=int)
    args = parser.parse_args()

    import nemo_run as run

    from nemo_run_sweep import train as task_fn  # importable path for fiddle (see docstring)

    t0 = time.perf_counter()
    executor = run.LocalExecutor()
    with run.Experiment("train", log_level="WARN") as exp:
        for i in range(args.jobs):
            exp.add(run.Partial(task_fn, steps=20, lr=i, seed=0), executor=executor, name=f"train-{i}")
        t_add = time.perf_counter()
        exp.dryrun(log=False, delete_exp_dir=False)  # deleted below, after the first job is shown
        t_dry = time.perf_counter()
        jobs = exp.jobs
        missing = [j.id for j in jobs if getattr(j, "_dryrun_info", None) is None]
        if len(jobs) != args.jobs or missing:
            sys.exit(f"nemo_run_sweep: {len(jobs)} jobs, {len(missing)} without dry-run info")
        first = jobs[0]
        print(f"# NeMo-Run {run.__version__ if hasattr(run, '__version__') else ''} dry run: experiment {exp._id} of "
              f"{len(jobs)} jobs (LocalExecutor, run.Partial); every job packaged and dry-run, nothing launched")
        for job in jobs[:SUMMARY_LINES]:
            print(f"#   {job.id}: lr={job.task.lr}")
        if len(jobs) > SUMMARY_LINES:
            print(f"#   ... and {len(jobs) - SUMMARY_LINES} more")
        print(f"# artifacts of the first job ({first.executor.job_dir}):")
        for root, _, files in sorted(os.walk(first.executor.job_dir)):
            for name in sorted(files):
                path = os.path.join(root, name)
                print(f"==> {os.path.relpath(path, first.executor.job_dir)} <==")
                with open(path, encoding="utf-8", errors="replace") as fh:
                    print(fh.read().rstrip("\n"))
        print(f"==> TorchX dry-run request <==\n{first._dryrun_info}")
        shutil.rmtree(exp._exp_dir)
    print(f"# timings: add {t_add - t0:.2f}s, dryrun {t_dry - t_add:.2f}s", file=sys.stderr)


if __name__ == "__main__":
    main()
