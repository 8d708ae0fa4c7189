"""The real CLI in a subprocess: help, dry run, render_dir, and every config error as ONE line + exit 2."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli

ERROR_CASES = {
    "unknown group option": (["executor=slurmm", "task=hello"], r"unknown executor option 'slurmm'; available: .*local"),
    "unknown key with suggestion": (["task=hello", "executor.retrys=1"], r"unknown key 'executor.retrys'; did you mean 'executor.retries'\?"),
    "unknown top-level key": (["task=hello", "dryrn=true"], r"unknown key 'dryrn'; did you mean 'dryrun'\?"),
    "wrong type": (["task=hello", "executor.retries=two"], r"executor.retries=two: Value 'two' of type 'str' could not be converted to Integer"),
    "bad bool": (["task=hello", "dryrun=maybe"], r"dryrun=maybe: Value 'maybe' is not a valid bool"),
    "missing required value": (["task=hello", "task.name=???"], r"missing required value 'task.name'"),
    "force-add on typed node": (["task=hello", "+executor.acount=1"], r"unknown key 'executor.acount'"),
    "force-add at top level": (["task=hello", "+foo=1"], r"unknown key 'foo'"),
    "no task": ([], r"no task selected; pick one with task=<name>"),
    "unknown task": (["task=nope"], r"unknown task option 'nope'; available: .*hello, .*train"),
    "two task kinds": (["task=hello", "task.script=run.sh"], r"must set exactly one of inline, script or target \(it sets inline and script\)"),
    "no task kind": (["task=hello", "task.inline=null"], r"must set exactly one of inline, script or target \(it sets none\)"),
    "function does not import": (["task=train", "task.target=no_such_pkg.train"], r"function target 'no_such_pkg.train' cannot be imported: ModuleNotFoundError"),
    "function attribute missing": (["task=train", "task.target=nemorun.examples.train.nope"], r"has no attribute 'nope'"),
    "bad env name": (["task=hello", "+task.env.BAD-NAME=x"], r"environment variable name .BAD-NAME. is not valid"),
    "bad override syntax": (["task=hello", "executor.retries=[1"], r"."),
    "interpolation to nothing": (["task=hello", "name=${nope}"], r"Interpolation key 'nope' not found"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_config_error_is_one_line_exit_2(case: str, cli_env: dict[str, str], nemorun_home: Path) -> None:
    args, pattern = ERROR_CASES[case]
    proc = run_cli([*args, "dryrun=false"], env=cli_env)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("nemorun: error: ")
    assert "Traceback" not in proc.stderr + proc.stdout
    import re

    assert re.search(pattern, lines[0]), lines[0]
    assert not (nemorun_home / "experiments").exists(), "a rejected config must record nothing"


def test_traceback_only_when_asked(cli_env: dict[str, str]) -> None:
    proc = run_cli(["task=nope"], env={**cli_env, "NEMORUN_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    proc = run_cli(["task=hello", "+foo=1", "hydra.verbose=true"], env=cli_env)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_help_lists_groups_and_examples(cli_env: dict[str, str]) -> None:
    proc = run_cli(["--help"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    import re

    assert re.search(r"^executor: .*\blocal\b", proc.stdout, re.M) and re.search(r"^task: .*hello, .*train", proc.stdout, re.M)
    assert "dryrun=true" in proc.stdout and "_schema" not in proc.stdout


def test_cfg_job_and_info(cli_env: dict[str, str]) -> None:
    proc = run_cli(["task=train", "--cfg", "job"], env=cli_env)
    assert proc.returncode == 0 and "target: nemorun.examples.train.train" in proc.stdout
    proc = run_cli(["--info", "searchpath"], env=cli_env)
    assert proc.returncode == 0 and "pkg://nemorun.conf" in proc.stdout


def test_shell_completion(cli_env: dict[str, str]) -> None:
    import subprocess

    out = subprocess.run(
        ["nemorun", "-sc", "query=bash"], env={**cli_env, "COMP_LINE": "nemorun task=h"}, capture_output=True, text=True
    )
    assert out.returncode == 0 and "task=hello" in out.stdout.split()
    install = subprocess.run(["nemorun", "-sc", "install=bash"], env=cli_env, capture_output=True, text=True)
    assert "complete" in install.stdout and "nemorun" in install.stdout


def test_dry_run_prints_every_artifact_and_submits_nothing(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    proc = run_cli(["task=train", "task.params.steps=5", "dryrun=true", f"render_dir={out_dir}"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "==> launch.sh <==" in proc.stdout and "==> function.yaml <==" in proc.stdout
    assert '"steps": 5' in proc.stdout
    assert sorted(p.name for p in out_dir.iterdir()) == ["function.yaml", "launch.sh", "nemorun_entry.py"]
    assert "==> nemorun_entry.py <== (nemorun's node-side entry point" in proc.stdout
    assert (out_dir / "launch.sh").read_text() in proc.stdout
    assert not (nemorun_home / "experiments").exists()
