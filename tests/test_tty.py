"""What a person at a terminal sees, driven through a real pseudo-terminal (pexpect): the live
state table and summary of a waited sweep, and Ctrl-C (the terminal's own SIGINT to the
foreground process group) during ``wait=true`` saying the jobs run on and how to reattach. The
same commands through a pipe print plain lines only (no escape codes, no table).
"""
from __future__ import annotations

import subprocess
import sys

import pexpect

import nemorun
from tests.helpers import run_cli


def _spawn(args: list[str], env: dict[str, str]) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, ["-m", "nemorun", *args], env={**env, "TERM": "xterm"},
                         encoding="utf-8", timeout=90, dimensions=(40, 160))


def test_waited_sweep_shows_a_live_table_and_a_summary(cli_env: dict[str, str]) -> None:
    child = _spawn(["-m", "task=hello", "task.inline='sleep 1; exit $((NEMORUN_X - 1))'", "task.env.NEMORUN_X=1,2",
                    "wait=true", "name=tty"], cli_env)
    for column in ("JOB", "NEMORUN_X", "STATE", "EXIT"):  # the live table, with the swept key as a column
        child.expect(column)
    child.expect(r"tty/\S+: 1 succeeded, 1 failed")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1  # a failed job fails the waited sweep, as before


def test_piped_output_is_plain(cli_env: dict[str, str]) -> None:
    proc = run_cli(["-m", "task=hello", "task.env.NEMORUN_X=1,2", "wait=true", "name=piped"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr and "succeeded" not in proc.stdout + proc.stderr
    assert proc.stdout.count("submitted as") == 2


def test_ctrl_c_at_the_terminal_detaches_a_single_job(cli_env: dict[str, str]) -> None:
    child = _spawn(["task=hello", "task.inline='echo started; sleep 60'", "wait=true"], cli_env)
    child.expect("started")
    child.sendcontrol("c")
    child.expect(r"nemorun: error: stopped waiting; the job keeps running: nemorun exp logs (\S+) -f to reattach, "
                 r"nemorun exp cancel (\S+) to stop")
    exp_id = child.match.group(1)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    exp = nemorun.Experiment.load(exp_id, home=cli_env["NEMORUN_HOME"])
    try:
        assert exp.status()["hello"].state.value == "RUNNING"
        reattached = subprocess.run([sys.executable, "-m", "nemorun", "exp", "logs", exp_id], capture_output=True,
                                    text=True, env=cli_env, timeout=60)
        assert "started" in reattached.stdout
    finally:
        exp.cancel()


def test_ctrl_c_at_the_terminal_detaches_a_waited_sweep(cli_env: dict[str, str]) -> None:
    child = _spawn(["-m", "task=hello", "task.inline='sleep 60'", "task.env.NEMORUN_X=1,2", "wait=true"], cli_env)
    child.expect(r"RUNNING")  # the live table shows the jobs running
    child.sendcontrol("c")
    child.expect(r"stopped waiting; the jobs keep running: nemorun exp status (\S+) to reattach")
    exp_id = child.match.group(1)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    exp = nemorun.Experiment.load(exp_id, home=cli_env["NEMORUN_HOME"])
    try:
        assert {s.state.value for s in exp.status().values()} == {"RUNNING"}
    finally:
        exp.cancel()
