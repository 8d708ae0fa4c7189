"""The compose cache: a repeated command line skips Hydra's compose, and any input change misses."""
from __future__ import annotations

from pathlib import Path

from tests.helpers import run_cli


def _entries(home: Path) -> list[Path]:
    return sorted((home / "cache" / "compose").glob("*.pkl"))


def _user_task(root: Path, text: str) -> None:
    (root / "task").mkdir(parents=True, exist_ok=True)
    (root / "task" / "mine.yaml").write_text(f"defaults:\n  - /_schema_task@_here_\n  - _self_\nname: mine\ninline: echo {text}\n")


def test_repeated_dry_run_is_served_from_the_cache_with_identical_output(cli_env: dict[str, str], nemorun_home: Path) -> None:
    args = ["task=train", "task.params.steps=3", "dryrun=true"]
    first = run_cli(args, env=cli_env)
    assert first.returncode == 0, first.stderr
    assert len(_entries(nemorun_home)) == 1
    entry = _entries(nemorun_home)[0]
    stamp = entry.stat().st_mtime_ns
    second = run_cli(args, env=cli_env)
    assert second.returncode == 0, second.stderr
    import re

    def strip(out: str) -> str:  # each run is a new experiment id; everything else must match
        return re.sub(r"\d{8}-\d{6}-\d{6}-[0-9a-f]{4}", "<id>", out)

    assert strip(second.stdout) == strip(first.stdout)
    assert _entries(nemorun_home) == [entry] and entry.stat().st_mtime_ns == stamp, "a hit must not rewrite"
    run_cli(["task=train", "task.params.steps=4", "dryrun=true"], env=cli_env)
    assert len(_entries(nemorun_home)) == 2, "other overrides are another entry"


def test_a_changed_user_config_is_a_miss(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    user = tmp_path / "userconf"
    _user_task(user, "first")
    env = {**cli_env, "NEMORUN_CONFIG_PATH": str(user)}
    assert "echo first" in run_cli(["task=mine", "dryrun=true"], env=env).stdout
    _user_task(user, "second-version")
    proc = run_cli(["task=mine", "dryrun=true"], env=env)
    assert "echo second-version" in proc.stdout and "echo first" not in proc.stdout


def test_a_corrupt_entry_is_composed_again(cli_env: dict[str, str], nemorun_home: Path) -> None:
    args = ["task=hello", "dryrun=true"]
    assert run_cli(args, env=cli_env).returncode == 0
    (entry,) = _entries(nemorun_home)
    entry.write_bytes(b"not a pickle")
    proc = run_cli(args, env=cli_env)
    assert proc.returncode == 0 and "==> launch.sh <==" in proc.stdout, proc.stderr


def test_cache_can_be_turned_off(cli_env: dict[str, str], nemorun_home: Path) -> None:
    proc = run_cli(["task=hello", "dryrun=true"], env={**cli_env, "NEMORUN_COMPOSE_CACHE": "0"})
    assert proc.returncode == 0 and not _entries(nemorun_home)


def test_errors_are_never_cached(cli_env: dict[str, str], nemorun_home: Path) -> None:
    for _ in range(2):
        proc = run_cli(["task=hello", "executor.retrys=1"], env=cli_env)
        assert proc.returncode == 2 and "did you mean 'executor.retries'" in proc.stderr
    assert not _entries(nemorun_home)


def test_a_cached_config_still_fails_later_checks(cli_env: dict[str, str], nemorun_home: Path) -> None:
    args = ["task=train", "task.params.steps=many", "dryrun=true"]
    for _ in range(2):  # the second run loads the cached config; the signature check still runs
        proc = run_cli(args, env=cli_env)
        assert proc.returncode == 2 and "expects int" in proc.stderr, proc.stderr
