"""``--help``, ``-sc`` and TAB completion from nemorun.quick's cache print exactly what Hydra prints.

The reference is Hydra itself: its own ``BashCompletion._query`` on the same config loader
(in-process, for many queries), and the real CLI with the cache off (``NEMORUN_COMPOSE_CACHE=0``)
in a subprocess, compared with the real CLI's fast path with the cache cold, then warm, then after
an option file was added to a ``--config-dir`` / ``NEMORUN_CONFIG_PATH`` folder.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

from nemorun import completion_index, exp_cli, quick
from nemorun.compose import CONFIG_NAME, hydra_context
from tests.helpers import run_cli

QUERIES = [
    "nemorun ", "nemorun ex", "nemorun executor", "nemorun executor=", "nemorun executor=sl", "nemorun executor.",
    "nemorun executor.re", "nemorun executor.retries=", "nemorun executor/", "nemorun executor/tu",
    "nemorun executor/tunnel=", "nemorun +exe", "nemorun ~exe", "nemorun ~executor", "nemorun +executor.",
    "nemorun task=", "nemorun task=train task.", "nemorun task=train task.params.", "nemorun task=train task.params.st",
    "nemorun task=train task.params.steps=", "nemorun executor=slurm executor.par", "nemorun executor=slurm executor.",
    "nemorun executor=slurm executor.tunnel.", "nemorun -m task=train task.params.lr=", "nemorun -m ta",
    "nemorun dryrun=", "nemorun wait", "nemorun nope.x", "nemorun executor.env_vars.", "nemorun launcher=torchrun launcher.",
    "nemorun --config-dir /tmp task=", "nemorun hydra/", "nemorun hydra/launcher=", "nemorun executor.retries.x",
]


def _hydra_answer(line: str) -> list[str]:
    from hydra._internal.core_plugins.bash_completion import BashCompletion

    with hydra_context() as loader:
        return BashCompletion(loader)._query(CONFIG_NAME, BashCompletion.strip_python_or_app_name(line))


@functools.lru_cache(maxsize=None)
def _index(words: tuple[str, ...], multirun: bool) -> str:
    """One index per finished-words key, as the real cache keeps it (JSON text: every query gets
    its own fresh copy): 34 queries share 6 keys, and each build composes the config (~0.5 s)."""
    return json.dumps(completion_index.build(list(words), multirun))


def _fast_answer(line: str) -> list[str] | None:
    query = quick.parse_line(line)
    assert query is not None, line
    index = json.loads(_index(tuple(query.words), query.multirun))  # as cached
    try:
        return quick.answer(index, query)
    except quick._Unanswerable:
        return None


def test_index_answers_are_hydras() -> None:
    answered = 0
    for line in QUERIES:
        fast = _fast_answer(line)
        if fast is not None:
            answered += 1
            assert fast == _hydra_answer(line), line
    assert answered >= len(QUERIES) - 3  # only unknown paths under a value go to Hydra


def _cli(args: list[str], env: dict[str, str], comp_line: str | None = None) -> str:
    if comp_line is not None:
        env = {**env, "COMP_LINE": comp_line}
    proc = run_cli(args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def test_cli_fast_path_matches_hydra_cold_warm_and_after_a_new_option(cli_env: dict[str, str], tmp_path: Path) -> None:
    slow_env = {**cli_env, "NEMORUN_COMPOSE_CACHE": "0"}
    conf = tmp_path / "myconf"
    (conf / "task").mkdir(parents=True)
    (conf / "task" / "pretrain.yaml").write_text("defaults:\n  - /_schema_task@_here_\n  - _self_\nname: pretrain\ninline: echo hi\n")
    calls = [(["--help"], None), (["--config-dir", str(conf), "--help"], None), (["-sc", "install=bash"], None),
             (["-sc", "query=bash"], "nemorun task="), (["-sc", "query=bash"], "nemorun executor=slurm executor.par"),
             (["-sc", "query=bash"], f"nemorun --config-dir {conf} task=")]
    cache = Path(cli_env["NEMORUN_HOME"]) / "cache" / "quick"
    for args, line in calls:
        slow = _cli(args, slow_env, line)
        assert slow.strip(), args
        cold = _cli(args, cli_env, line)
        entries = set(cache.iterdir())
        warm = _cli(args, cli_env, line)
        assert cold == slow == warm, (args, line)
        assert set(cache.iterdir()) == entries, "a warm call must be served, not cached again"
    help_text = _cli(["--config-dir", str(conf), "--help"], cli_env)
    assert "pretrain" in help_text and "finetune" not in help_text
    (conf / "task" / "finetune.yaml").write_text((conf / "task" / "pretrain.yaml").read_text().replace("pretrain", "finetune"))
    after = _cli(["--config-dir", str(conf), "--help"], cli_env)
    assert "finetune" in after and after == _cli(["--config-dir", str(conf), "--help"], slow_env)

    path_env = {**cli_env, "NEMORUN_CONFIG_PATH": str(conf)}
    line = "nemorun task=f"
    assert _cli(["-sc", "query=bash"], path_env, line).split() == ["task=finetune", "task=function"]
    (conf / "task" / "fast.yaml").write_text((conf / "task" / "pretrain.yaml").read_text().replace("pretrain", "fast"))
    fresh = _cli(["-sc", "query=bash"], path_env, line)
    assert fresh.split() == ["task=fast", "task=finetune", "task=function"]
    assert fresh == _cli(["-sc", "query=bash"], {**path_env, "NEMORUN_COMPOSE_CACHE": "0"}, line)


def test_exp_completion_lists_commands_ids_and_jobs(cli_env: dict[str, str]) -> None:
    proc = run_cli(["-m", "task=hello", "executor.ntasks_per_node=1,2", "name=tabbed"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    exp_dir = next((Path(cli_env["NEMORUN_HOME"]) / "experiments" / "tabbed").iterdir())
    jobs = json.loads((exp_dir / "experiment.json").read_text())["jobs"]

    def tab(line: str) -> list[str]:
        return _cli(["-sc", "query=bash"], cli_env, line).split()

    assert tab("nemorun exp ") == [*exp_cli_commands(), "-h", "--help"]
    assert tab("nemorun exp s") == ["show", "status"]
    assert tab("nemorun exp show ") == sorted(["latest", exp_dir.name])
    assert tab(f"nemorun exp logs {exp_dir.name[:18]} ") == sorted(jobs)
    assert tab("nemorun exp logs latest -") == ["-f", "--follow", "-h", "--help"]
    assert tab("nemorun exp list --name t") == ["tabbed"]
    assert tab("nemorun exp nope ") == []


def exp_cli_commands() -> list[str]:
    return list(exp_cli._parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]


def test_exp_flags_are_exp_clis() -> None:
    choices = exp_cli._parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert list(choices) == list(quick.EXP_COMMANDS)
    for name, sub in choices.items():
        flags = {o for a in sub._actions for o in a.option_strings}
        assert flags == set(quick.EXP_COMMANDS[name]), name


def test_off_switch_and_unparsable_lines_go_to_hydra(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "NEMORUN_COMPOSE_CACHE": "0"}
    assert _cli(["-sc", "query=bash"], env, "nemorun executor=").split()[0] == "executor=dgxcloud"
    assert not (Path(cli_env["NEMORUN_HOME"]) / "cache" / "quick").exists()
    assert quick.parse_line("nemorun --cfg job ta") is None  # flags the index does not model: Hydra parses


@pytest.mark.parametrize("line", ["nemorun exp", "nemorun exp  "])
def test_exp_word_itself(line: str, cli_env: dict[str, str]) -> None:
    out = _cli(["-sc", "query=bash"], cli_env, line)
    assert "error" not in out
    if line.endswith(" "):
        assert out.split()[0] == "list"
    else:
        assert out.split() == _cli(["-sc", "query=bash"], {**cli_env, "NEMORUN_COMPOSE_CACHE": "0"}, line).split()

