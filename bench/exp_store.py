"""``nemorun exp status`` of a 1,000-job experiment and ``nemorun exp list`` over 500 experiments.

Builds the stores first (records written as a launch writes them: ExperimentRecord.create +
the batched task records of a job array + the catalog row), then times the real CLI in a fresh process:

- ``exp status``: a 1,000-task Slurm array whose tasks each wrote a log line. Slurm's clients are
  stood in for by scripts on PATH (``squeue``/``scontrol``/``sacct`` answering for every task,
  RUNNING or COMPLETED), which count their calls: the figure is nemorun's own cost plus one
  process start per query, and the call counts show how many queries a status makes (goal: one
  squeue, <= 1 s). "first look": every task changes state (one states.json written; it was 1,000
  records rewritten; for COMPLETED also 1,000 logs kept in the record: hard links, the cluster's
  files being on this machine); "again": the same states once more (nothing written but the time
  of the check). The floor: a bare Python process doing the work a first look cannot skip.
- ``exp status`` of a NON-array sweep: 1,000 local jobs (one record each) whose wrappers all
  wrote their exit code; the first look records them (the local backend reads job folders).
- ``exp list``: 500 three-job sweeps, with the catalog cold (no ``catalog.db``: rebuilt from the
  folders) and warm (goal <= 0.5 s).

Every nemorun process shares a private byte-code cache (``PYTHONPYCACHEPREFIX``, written by an
untimed first run; ``PYTHONDONTWRITEBYTECODE`` dropped), as in bench/startup.py: an installed
package has its ``.pyc`` files, and recompiling ~50 modules per run is not the cost of a status.
The load average is printed before and after: on a shared machine, compare interleaved runs.

    python bench/exp_store.py [--runs 5] [--jobs 1000] [--experiments 500]
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

from nemorun import catalog
from nemorun.states import AppState
from nemorun.store import ExperimentRecord, JobRecord, atomic_write_many, new_experiment_id

FAKE = r'''#!/usr/bin/env python3
import os, sys
with open(os.environ["BENCH_CALLS"], "a") as f:
    f.write(os.path.basename(sys.argv[0]) + "\n")
state = os.environ["BENCH_STATE"]
prog, args = os.path.basename(sys.argv[0]), sys.argv[1:]
if prog == "squeue":
    ids = args[args.index("-j") + 1].split(",") if "-j" in args else []
    for i in ids:  # -O ...,exit_code: the wait status as well
        print(f"{i}|{state}|None|0|" if "-O" in args else f"{i}|{state}|None")
elif prog == "scontrol":
    print(f"JobId={args[-1]} JobState={state} ExitCode=0:0 Reason=None")
elif prog == "sacct":
    pass
'''


FLOOR = r'''
import json, os, subprocess, sys
root, state = sys.argv[1], sys.argv[2]
jobs = json.load(open(os.path.join(root, "experiment.json")))["jobs"]
records = [json.load(open(os.path.join(root, "jobs", j, "record.json"))) for j in jobs]
ids = ",".join(r["handle"]["id"] for r in records)
out = subprocess.run(["squeue", "-h", "-O", "x", "-j", ids], capture_output=True, text=True).stdout
if state == "COMPLETED":
    for r in records:
        os.link(r["handle"]["data"]["stdout"], os.path.join(root, "jobs", r["name"], "stdout.log"))
tmp = os.path.join(root, ".states.tmp")
with open(tmp, "w") as f:
    f.write(json.dumps({r["name"]: state for r in records}))
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, os.path.join(root, "states.json"))
'''


def build_array(home: Path, jobs: int) -> ExperimentRecord:
    names = [f"train-{i:04d}" for i in range(jobs)]
    rec = ExperimentRecord.create(home=home, name="train", experiment_id=new_experiment_id(), target="slurm",
                                  config_yaml="{}\n", overrides=["task=train", f"task.params.lr=range(0,{jobs})"],
                                  submit_dir=str(home), job_names=names, kind="sweep", multirun=True,
                                  arrays={"train-array": names})
    job_dir = str(rec.job_dir("train-array"))
    data = {"tunnel": {"kind": "local"}, "job_dir": job_dir}
    array = JobRecord("train-array", "slurm", phase="submitted", state=AppState.SUBMITTED.value, array_of=names,
                      handle={"backend": "slurm", "id": "1000", "data": {**data, "stdout": job_dir + "/stdout-%a.log"}})
    rec.save_job(array)
    Path(job_dir).mkdir(parents=True, exist_ok=True)
    for i in range(jobs):  # what each task wrote: a finished task's logs are kept in its record folder
        Path(f"{job_dir}/stdout-{i}.log").write_text(f"task {i}: loss 0.{i}\n")
    rec.save_jobs(JobRecord(n, "slurm", phase="submitted", state=AppState.SUBMITTED.value, array="train-array", array_index=i,
                            overrides=[f"task.params.lr={i}"],
                            handle={"backend": "slurm", "id": f"1000_{i}", "data": {
                                **data, "stdout": f"{job_dir}/stdout-{i}.log", "stderr": f"{job_dir}/stderr-{i}.log"}})
                  for i, n in enumerate(names))
    catalog.refresh(home, rec)  # the launch's last step: the experiment's catalog row
    return rec


def build_local(home: Path, jobs: int) -> ExperimentRecord:
    """A NON-array sweep of ``jobs`` local jobs (one record and one folder each, as a local sweep
    launches them), every one finished: its wrapper wrote ``exit_code`` into the job folder."""
    names = [f"train-{i:04d}" for i in range(jobs)]
    rec = ExperimentRecord.create(home=home, name="train", experiment_id=new_experiment_id(), target="local",
                                  config_yaml="{}\n", overrides=["task=train", f"task.params.lr=range(0,{jobs})"],
                                  submit_dir=str(home), job_names=names, kind="sweep", multirun=True)
    atomic_write_many(((rec.job_dir(n) / name, text) for n in names
                       for name, text in (("exit_code", "0\n"), ("stdout.log", f"{n}\n"), ("stderr.log", ""))), rec.path)
    rec.save_jobs(JobRecord(n, "local", phase="submitted", state=AppState.RUNNING.value, overrides=[f"task.params.lr={i}"],
                            handle={"backend": "local", "id": str(4_000_000 + i), "data": {
                                "pid": 4_000_000 + i, "start_time": "1", "job_dir": str(rec.job_dir(n))}})
                  for i, n in enumerate(names))
    catalog.refresh(home, rec)
    return rec


def build_many(home: Path, count: int) -> None:
    for k in range(count):
        names = [f"train-{i}" for i in range(3)]
        rec = ExperimentRecord.create(home=home, name=f"exp{k % 20}", experiment_id=new_experiment_id(time.time() + k),
                                      target="local", config_yaml="{}\n", overrides=["task=train", "task.params.lr=1,2,3"],
                                      submit_dir=str(home), job_names=names, kind="sweep", multirun=True)
        rec.save_jobs(JobRecord(n, "local", phase="submitted", state=AppState.SUCCEEDED.value, overrides=[f"task.params.lr={i}"])
                      for i, n in enumerate(names))


_PYCACHE: dict[str, str] = {}


def timed(argv: list[str], env: dict[str, str]) -> float:
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"} | _PYCACHE
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nemorun", *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"bench: nemorun {' '.join(argv)} failed: {proc.stderr.strip()[-1500:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--experiments", type=int, default=500)
    parser.add_argument("--states", default="RUNNING,COMPLETED", help="states the stand-in squeue reports")
    args = parser.parse_args()
    print("load average: %.2f %.2f %.2f" % os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        _PYCACHE["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        timed(["exp", "list"], dict(os.environ, NEMORUN_HOME=str(Path(tmp) / "warm-up")))  # writes the .pyc files
        bin_dir = Path(tmp) / "bin"
        bin_dir.mkdir()
        for prog in ("squeue", "scontrol", "sacct"):
            (bin_dir / prog).write_text(FAKE)
            (bin_dir / prog).chmod(0o755)
        calls = Path(tmp) / "calls.txt"
        home = Path(tmp) / "status-home"
        rec = build_array(home, args.jobs)
        timed(["exp", "status", rec.id], dict(os.environ, NEMORUN_HOME=str(home), PATH=f"{bin_dir}:{os.environ['PATH']}",
                                              BENCH_CALLS=str(calls), BENCH_STATE="RUNNING"))  # .pyc of the status path
        print(f"{'command':44s} {'median s':>9} {'min s':>7}  queries per run")
        # "first look": every task changes state (records rewritten; finished tasks' logs kept);
        # "again": the same states once more (nothing to write but the check time)
        for state in args.states.split(","):
            for label, fresh in (("first look", True), ("again", False)):
                if state == "COMPLETED" and not fresh:
                    continue  # terminal states are kept: a finished array is not asked again
                walls, counts = [], ""
                for _ in range(args.runs):
                    if fresh:
                        shutil.rmtree(home)
                        rec = build_array(home, args.jobs)
                        os.sync()  # the build's own writes settle first: the figure is the status alone
                    env = dict(os.environ, NEMORUN_HOME=str(home), PATH=f"{bin_dir}:{os.environ['PATH']}",
                               BENCH_CALLS=str(calls), BENCH_STATE=state)
                    calls.write_text("")
                    walls.append(timed(["exp", "status", rec.id], env))
                    names = calls.read_text().split()
                    counts = ", ".join(f"{names.count(p)} {p}" for p in ("squeue", "scontrol", "sacct"))
                print(f"{f'exp status, {args.jobs} tasks {state}, {label}':44s} {statistics.median(walls):>9.2f} "
                      f"{min(walls):>7.2f}  {counts}")
        # a NON-array sweep of local jobs, all finished: the first look records 1,000 exits
        walls = []
        for _ in range(args.runs):
            local_home = Path(tmp) / "local-home"
            shutil.rmtree(local_home, ignore_errors=True)
            local = build_local(local_home, args.jobs)
            os.sync()
            walls.append(timed(["exp", "status", local.id], dict(os.environ, NEMORUN_HOME=str(local_home))))
        print(f"{f'exp status, {args.jobs} local jobs (no array), first look':44s} {statistics.median(walls):>9.2f} {min(walls):>7.2f}")
        # the floor of a first look: a bare Python process (no nemorun) that does what a status
        # must: read the 1,000 task records (for their handles), ask the stand-in squeue once,
        # keep each finished task's log (a hard link, COMPLETED), write one file whole (fsync)
        for state in args.states.split(","):
            walls = []
            for _ in range(args.runs):
                shutil.rmtree(home)
                rec = build_array(home, args.jobs)
                os.sync()
                env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", BENCH_CALLS=str(calls), BENCH_STATE=state)
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", FLOOR, str(rec.path), state], env=env, check=True)
                walls.append(time.perf_counter() - t0)
            print(f"{f'  floor: python + 1,000 reads + squeue ({state})':44s} {statistics.median(walls):>9.2f} {min(walls):>7.2f}")
        many = Path(tmp) / "list-home"
        build_many(many, args.experiments)
        env = dict(os.environ, NEMORUN_HOME=str(many))
        for label, cold in (("cold (catalog.db rebuilt)", True), ("warm", False)):
            walls = []
            for _ in range(args.runs):
                if cold:
                    for f in many.glob("catalog.db*"):
                        f.unlink()
                walls.append(timed(["exp", "list"], env))
            print(f"{f'exp list, {args.experiments} experiments, {label}':44s} {statistics.median(walls):>9.2f} {min(walls):>7.2f}")
        walls = [timed(["exp", "list", "--limit", "1"], env) for _ in range(args.runs)]
        print(f"{'exp list --limit 1 (start-up + one row)':44s} {statistics.median(walls):>9.2f} {min(walls):>7.2f}")
    print("load average: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
