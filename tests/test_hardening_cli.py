"""Issue "Hardening", items 6, 11, 12 and 13, through the CLI as a user meets them: the catalog
agrees with the records, a huge sweep is refused before it is expanded, lexer errors say how to
quote, and a reader that goes away never stops a submission half way."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nemorun
from nemorun.errors import ConfigError
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import run_cli


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nemorun: error: "), proc.stderr
    return lines[0]


def list_rows(env: dict[str, str]) -> list[dict]:
    proc = run_cli(["exp", "list", "--json"], env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# -- 6: whatever updates a record updates the catalog ----------------------------------------


def test_waited_failure_shows_in_exp_list_without_a_status_call(cli_env: dict[str, str]) -> None:
    proc = run_cli(["task=hello", "task.inline='exit 3'", "wait=true"], env=cli_env)
    assert proc.returncode == 3, proc.stderr
    [row] = list_rows(cli_env)
    assert row["states"] == {"FAILED": 1}


@pytest.mark.slurm
def test_refused_slurm_array_shows_its_error_per_task(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    proc = run_cli(["-m", "executor=slurm", "executor.partition=no-such-partition", f"executor.job_dir={slurm_cluster.jobs_dir}",
                    "task=train", "task.params.steps=1,2"], env=cli_env)
    assert proc.returncode == 1
    assert "array train-array was not submitted" in one_error_line(proc)
    [row] = list_rows(cli_env)
    assert row["states"] == {"FAILED": 2}
    status = json.loads(run_cli(["exp", "status", row["id"], "--json"], env=cli_env).stdout)
    for job in status["jobs"].values():
        assert job["state"] == "FAILED" and "partition" in job["detail"].lower(), job


# -- 11: a sweep too large is refused before it is expanded ----------------------------------


def test_huge_sweep_is_refused_before_expanding(cli_env: dict[str, str]) -> None:
    started = time.monotonic()
    proc = run_cli(["-m", "task=train", "task.params.steps=range(0,100000000)", "dryrun=true"], env=cli_env, timeout=60)
    assert proc.returncode == 2
    assert "makes 100,000,000 jobs, more than hydra.sweeper.max_jobs=100000" in one_error_line(proc)
    assert time.monotonic() - started < 30  # expanding it would take minutes and gigabytes


def test_sweep_limit_is_configurable_on_both_paths(cli_env: dict[str, str]) -> None:
    proc = run_cli(["-m", "task=train", "task.params.steps=1,2,3", "hydra.sweeper.max_jobs=2", "dryrun=true"], env=cli_env)
    assert proc.returncode == 2 and "makes 3 jobs" in one_error_line(proc)
    ok = run_cli(["-m", "task=train", "task.params.steps=1,2,3", "hydra.sweeper.max_jobs=3", "dryrun=true"], env=cli_env)
    assert ok.returncode == 0, ok.stderr
    with pytest.raises(ConfigError, match="makes 100,000,000 jobs"):
        nemorun.launch(["task=train", "task.params.steps=range(0,100000000)"], dryrun=True, out=io.StringIO())


# -- 12: lexer errors and empty choices say what to type --------------------------------------


@pytest.mark.parametrize("override, quoted", [
    ("executor.container_image=nvcr.io#nvidia/pytorch:24.05-py3", "'executor.container_image=\"nvcr.io#nvidia/pytorch:24.05-py3\"'"),
    ("task.inline=echo a;echo b", "'task.inline=\"echo a;echo b\"'"),
    ("task.inline=échö", "'task.inline=\"échö\"'"),
    ("executor.srun_args=[--mpi=pmix]", "'executor.srun_args=[\"--mpi=pmix\"]'"),
])
def test_lexer_errors_show_the_quoted_form(override: str, quoted: str, cli_env: dict[str, str]) -> None:
    executor = "executor=slurm" if "srun" in override else "executor=docker" if "image" in override else "executor=local"
    args = [executor, "task=hello", "dryrun=true"]
    if executor == "executor=docker" and "image" not in override:
        args.append("executor.container_image=x")
    proc = run_cli([*args, override], env=cli_env)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "LexerNoViableAlt" not in line and "no viable alternative" not in line and f"write it as {quoted}" in line
    # the advice is a form that parses and carries the value through
    fixed = run_cli([*args, subprocess.run(["bash", "-c", f"printf %s {quoted}"], capture_output=True, text=True).stdout],
                    env=cli_env)
    assert fixed.returncode == 0, fixed.stderr


def test_empty_group_choice_lists_the_options(cli_env: dict[str, str]) -> None:
    proc = run_cli(["task=", "dryrun=true"], env=cli_env)
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "task= picks no option; choose one of: " in line and "hello" in line and "search path" not in line


# -- 13: output closed early ----------------------------------------------------------------


def test_closed_pipe_does_not_stop_a_sweep(cli_env: dict[str, str], tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "nemorun", "-m", "task=hello", "task.inline='true','true ','true  '",
           "name=piped", "task.name=piped"]
    # a reader that reads one line and leaves: every later write of nemorun hits a closed pipe
    proc = subprocess.run(["bash", "-c", 'set -o pipefail; "$@" | head -c 1 >/dev/null', "bash", *cmd],
                          capture_output=True, text=True, env=cli_env, timeout=120)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    [row] = list_rows(cli_env)
    assert row["jobs"] == 3
    exp = nemorun.Experiment.load(row["id"], home=cli_env["NEMORUN_HOME"])
    assert [j.phase for j in exp.jobs] == ["submitted"] * 3


# -- Ctrl-C while waiting -------------------------------------------------------------------


def test_ctrl_c_during_wait_says_the_job_runs_on_and_how_to_reattach(cli_env: dict[str, str]) -> None:
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "nemorun", "task=hello", "task.inline='echo started; sleep 60'", "wait=true"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env)
    assert proc.stdout is not None
    for line in proc.stdout:  # the job's own output arrives once nemorun is waiting
        if line.strip() == "started":
            break
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process (the job has its own session)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nemorun: error: stopped waiting; the job keeps running: nemorun exp logs "), err
    exp = nemorun.Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert f"nemorun exp logs {exp.id} -f" in lines[0] and f"nemorun exp cancel {exp.id}" in lines[0]
    assert exp.status()["hello"].state.value == "RUNNING"
    exp.cancel()


def test_public_api_is_listed() -> None:
    assert {"Experiment", "__version__", "experiments", "launch", "run", "SlurmExecutor", "Partial"} <= set(dir(nemorun))
    assert all(getattr(nemorun, name) is not None for name in dir(nemorun))  # every listed name loads
    assert set(nemorun.__all__) == set(dir(nemorun))


# -- free-form maps take new keys without `+` (issue "What you type") --------------------------


def test_free_form_maps_take_new_keys_without_plus(cli_env: dict[str, str]) -> None:
    proc = run_cli(["task=train", "executor.env_vars.HF_TOKEN=abc", "task.params.sleep=0.1", "dryrun=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "export HF_TOKEN=abc" in proc.stdout and '"sleep": 0.1' in proc.stdout
    typo = run_cli(["task=train", "task.params.stepz=3", "dryrun=true"], env=cli_env)  # still checked: the signature
    assert typo.returncode == 2 and "did you mean 'task.params.steps'" in one_error_line(typo)
    typed = run_cli(["task=hello", "executor.retrys=1", "dryrun=true"], env=cli_env)  # typed nodes stay strict
    assert typed.returncode == 2 and "unknown key 'executor.retrys'" in one_error_line(typed)
