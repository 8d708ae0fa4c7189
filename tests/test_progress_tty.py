"""Bars a person at a terminal sees while a big sweep is planned and rendered and while a big code
archive is packed, driven through a real pseudo-terminal (pexpect, as tests/test_tty.py). The bars
go to stderr and vanish when done; the same commands through a pipe print no bar and no escape code.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pexpect

from nemorun import packaging, plan
from tests.helpers import run_cli

SWEEP = ["-m", "task=hello", f"task.env.NEMORUN_X=range(0,{plan.PROGRESS_MIN_JOBS + 10})", "dryrun=true", "name=bars"]


def _spawn(args: list[str], env: dict[str, str], cwd: str | None = None) -> pexpect.spawn:
    return pexpect.spawn(sys.executable, ["-m", "nemorun", *args], env={**env, "TERM": "xterm"}, cwd=cwd,
                         encoding="utf-8", timeout=120, dimensions=(40, 160), maxread=1 << 16)


def _code_tree(root: Path) -> Path:
    """A project big enough for a packing bar: PROGRESS_MIN_FILES small files."""
    src = root / "src"
    for i in range(packaging.PROGRESS_MIN_FILES):
        d = src / f"pkg{i // 200}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i}.py").write_text(f"VALUE = {i}\n")
    return root


def test_big_sweep_shows_planning_and_rendering_bars(cli_env: dict[str, str]) -> None:
    total = plan.PROGRESS_MIN_JOBS + 10
    child = _spawn(SWEEP, cli_env)
    child.expect(rf"planning\s.*\s\d+/{total}")
    child.expect(rf"rendering\s.*\s\d+/{total}")
    child.expect(f"# dry run: sweep of {total} jobs")  # then the dry run's own output
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_small_sweep_has_no_bar(cli_env: dict[str, str]) -> None:
    child = _spawn(["-m", "task=hello", "task.env.NEMORUN_X=1,2", "dryrun=true"], cli_env)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "planning" not in child.before and "rendering" not in child.before


def test_big_archive_shows_a_packing_bar(cli_env: dict[str, str], tmp_path: Path) -> None:
    project = _code_tree(tmp_path)
    child = _spawn(["task=hello", "packager=pattern", "packager.include_pattern=src", "dryrun=true"], cli_env,
                   cwd=str(project))
    child.expect(rf"packing code\s.*\s\d+/\d+")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_piped_output_has_no_bars(cli_env: dict[str, str], tmp_path: Path) -> None:
    proc = run_cli(SWEEP, env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr and "rendering" not in proc.stderr and "planning" not in proc.stderr
    project = _code_tree(tmp_path)
    proc = run_cli(["task=hello", "packager=pattern", "packager.include_pattern=src", "dryrun=true"], env=cli_env,
                   cwd=str(project))
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr and "packing" not in proc.stderr
