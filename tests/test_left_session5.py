"""Items left open by earlier sessions, each with the defect it fixes (session 5, LEFT).

Real parts only: the real CLI in a subprocess, real local jobs, the Python API in-process. The
backend-specific ones live beside their backend's tests: Lepton node groups listed once per
launch (tests/test_lepton_submit.py, the Lepton contract server), Docker's pre-send image check
and one-list status polls (tests/test_docker_engine.py, the real engine fixture), DGX Cloud's
PVC check before anything is sent (tests/test_run_for_real_lepton_dgx.py, the Run:ai contract
server).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import nemorun
from nemorun.api import Experiment
from nemorun.errors import ConfigError
from tests.helpers import run_cli
from tests.test_local import only_experiment

LOCAL_OPTION = "defaults:\n  - /_schema_executor_local@_here_\n  - _self_\nenv_vars:\n  MINE: {value}\n"
TASK_OPTION = "defaults:\n  - /_schema_task@_here_\n  - _self_\nname: {name}\ninline: echo ran-{name}\n"


# -- 1. control characters in option file names: escaped on every path --------------------------

# ESC (a colour sequence), BEL, CR and a newline in option file names, and ESC in a group folder
ODD_NAMES = {"executor/ev\x1b[31mil.yaml": "ev\\x1b[31mil", "executor/b\x07e\rl.yaml": "b\\x07e\\rl",
             "executor/new\nline.yaml": "new\\nline"}


@pytest.fixture
def odd_conf(tmp_path: Path) -> Path:
    conf = tmp_path / "odd-conf"
    for i, name in enumerate(ODD_NAMES):
        (conf / name).parent.mkdir(parents=True, exist_ok=True)
        (conf / name).write_text(LOCAL_OPTION.format(value=f"odd{i}"))
    (conf / "gr\x1boup").mkdir()
    (conf / "gr\x1boup" / "x.yaml").write_text("a: 1\n")
    return conf


def _no_control_characters(text: str) -> None:
    bad = sorted({c for c in text if not c.isprintable() and c != "\n"})
    assert not bad, f"control characters reach the terminal: {bad!r}"


def _cli(args: list[str], env: dict[str, str]) -> str:
    proc = run_cli(args, env=env)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return proc.stdout


def test_help_escapes_option_file_names_cached_or_not(odd_conf: Path, cli_env: dict[str, str], nemorun_home: Path) -> None:
    args = ["--config-dir", str(odd_conf), "--help"]
    hydra = _cli(args, {**cli_env, "NEMORUN_COMPOSE_CACHE": "0"})  # Hydra's own help, no cache
    cold = _cli(args, cli_env)  # nemorun.quick: a miss, Hydra's output captured and kept
    assert list((nemorun_home / "cache" / "quick").glob("*.out")), "the help was not cached"
    warm = _cli(args, cli_env)  # served from the cache
    assert hydra == cold == warm
    _no_control_characters(hydra)
    line = next(x for x in hydra.splitlines() if x.startswith("executor: "))
    for shown in ODD_NAMES.values():
        assert shown in line, line
    assert "gr\\x1boup: x" in hydra


def test_tab_completion_escapes_option_file_names_cached_or_not(odd_conf: Path, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "NEMORUN_CONFIG_PATH": str(odd_conf)}
    for line in ("nemorun executor=", "nemorun ", "nemorun gr"):
        query = ["-sc", "query=bash"]
        hydra = _cli(query, {**env, "COMP_LINE": line, "NEMORUN_COMPOSE_CACHE": "0"})
        cold, warm = (_cli(query, {**env, "COMP_LINE": line}) for _ in range(2))
        assert hydra == cold == warm, line
        _no_control_characters(hydra)
    assert set(_cli(query, {**env, "COMP_LINE": "nemorun executor="}).split()) >= {f"executor={s}" for s in ODD_NAMES.values()}
    assert "gr\\x1boup=" in _cli(query, {**env, "COMP_LINE": "nemorun gr"}).split()


def test_an_escaped_name_selects_its_file_and_errors_list_it_escaped(odd_conf: Path, cli_env: dict[str, str]) -> None:
    """What --help and TAB show can be typed back: it selects the file it stands for."""
    for typed, value in (('executor="ev\\x1b[31mil"', "odd0"), ("executor=new\\nline", "odd2")):  # [ needs quotes
        proc = run_cli(["--config-dir", str(odd_conf), typed, "task=hello", "dryrun=true"], env=cli_env)
        assert proc.returncode == 0, proc.stderr
        assert f"MINE={value}" in proc.stdout.replace("'", "").replace('"', ""), typed
    wrong = run_cli(["--config-dir", str(odd_conf), "executor=nope", "task=hello", "dryrun=true"], env=cli_env)
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1, wrong.stderr
    assert "b\\x07e\\rl" in wrong.stderr and "new\\nline" in wrong.stderr
    _no_control_characters(wrong.stderr)


# -- 2. --resume and rerun compose from the record's copy of the config folders ------------------

SWEEP = ["-m", "executor=mine", "task=hello", "task.inline='echo run-$MINE'", "executor.ntasks_per_node=1,2,3"]


def _outputs(exp: Experiment) -> list[str]:
    exp.wait(poll=0.2)
    return [(exp.record.job_dir(j.name) / "stdout.log").read_text().strip() for j in exp.jobs]


@pytest.mark.parametrize("since", ["changed", "deleted"])
def test_resume_continues_the_same_experiment_without_the_config_folder(since: str, cli_env: dict[str, str], nemorun_home: Path,
                                                                        tmp_path: Path) -> None:  # fmt: skip
    conf = tmp_path / "team-conf"
    (conf / "executor").mkdir(parents=True)
    (conf / "executor" / "mine.yaml").write_text(LOCAL_OPTION.format(value="launched"))
    (conf / "executor" / "notes.txt").write_text("not a config file: not recorded\n")
    env = {k: v for k, v in cli_env.items() if k != "NEMORUN_CONFIG_PATH"}
    proc = run_cli(["--config-dir", str(conf), *SWEEP], env={**env, "NEMORUN_FAULT": "before-submit:1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    rec = only_experiment(nemorun_home)
    assert json.loads((rec.path / "experiment.json").read_text())["config_dirs"] == [str(conf)]
    kept = rec.path / "config_dirs" / "0" / "executor"
    assert sorted(p.name for p in kept.iterdir()) == ["mine.yaml"]
    if since == "changed":  # the folder now says something else: the resume must not see it
        (conf / "executor" / "mine.yaml").write_text(LOCAL_OPTION.format(value="edited-since"))
    else:
        shutil.rmtree(conf)
    resumed = run_cli(["exp", "rerun", rec.path.name, "--resume"], env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "2 of 3 jobs not yet submitted" in resumed.stdout
    assert _outputs(Experiment(rec.path)) == ["run-launched"] * 3

    again = run_cli(["exp", "rerun", rec.path.name], env=env)  # a new experiment from the stored config
    assert again.returncode == 0, again.stderr
    [new] = [p for p in (nemorun_home / "experiments" / "hello").iterdir() if p.name != rec.path.name]
    assert _outputs(Experiment(new)) == ["run-launched"] * 3
    # the rerun's record keeps the folders it was composed from, so it can be resumed the same way
    assert (new / "config_dirs" / "0" / "executor" / "mine.yaml").read_text() == (kept / "mine.yaml").read_text()


def test_a_launch_without_config_folders_resumes_without_the_current_ones(cli_env: dict[str, str], nemorun_home: Path,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    """Folders set only at resume time (one replacing the packaged ``local`` option) are not used."""
    env = {k: v for k, v in cli_env.items() if k != "NEMORUN_CONFIG_PATH"}
    proc = run_cli(["-m", "task=hello", "task.inline='echo run-$MINE'", "executor.ntasks_per_node=1,2"],
                   env={**env, "NEMORUN_FAULT": "before-submit:1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    rec = only_experiment(nemorun_home)
    later = tmp_path / "later-conf"
    (later / "executor").mkdir(parents=True)
    (later / "executor" / "local.yaml").write_text(LOCAL_OPTION.format(value="later") + "workdir: /nonexistent\n")
    resumed = run_cli(["exp", "rerun", rec.path.name, "--resume"], env={**env, "NEMORUN_CONFIG_PATH": str(later)})
    assert resumed.returncode == 0, resumed.stderr
    assert _outputs(Experiment(rec.path)) == ["run-"] * 2  # MINE unset: the packaged local option


# -- 3. glob(...) sweeps through the Python API ---------------------------------------------------


@pytest.fixture
def two_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    conf = tmp_path / "tasks-conf"
    (conf / "task").mkdir(parents=True)
    for name in ("mine_a", "mine_b"):
        (conf / "task" / f"{name}.yaml").write_text(TASK_OPTION.format(name=name))
    monkeypatch.setenv("NEMORUN_CONFIG_PATH", str(conf))
    return conf


def test_python_api_glob_sweep_launches_every_option(two_tasks: Path, nemorun_home: Path) -> None:
    exp = nemorun.launch(["task=glob(mine_*)"], multirun=True)
    assert exp is not None and exp.meta["kind"] == "sweep"
    states = exp.wait(poll=0.2)
    assert {s.state.value for s in states.values()} == {"SUCCEEDED"} and len(states) == 2
    assert sorted(_outputs(exp)) == ["ran-mine_a", "ran-mine_b"]
    from hydra.core.global_hydra import GlobalHydra

    assert not GlobalHydra.instance().is_initialized()  # the API leaves no Hydra behind


def test_python_api_glob_sweep_dry_run_and_empty_glob(two_tasks: Path) -> None:
    out = io.StringIO()
    assert nemorun.launch(["task=glob([mine_a,mine_b,hello])"], dryrun=True, multirun=True, out=out) is None
    assert "sweep of 3 jobs" in out.getvalue()
    with pytest.raises(ConfigError, match=r"task=glob\(nothing_\*\): the sweep gives no values"):
        nemorun.launch(["task=glob(nothing_*)"], dryrun=True, multirun=True)


def test_cli_glob_sweep_resumes(two_tasks: Path, cli_env: dict[str, str], nemorun_home: Path) -> None:
    """The CLI hands glob sweeps to Hydra's sweeper; --resume plans them again itself."""
    env = {**cli_env, "NEMORUN_CONFIG_PATH": str(two_tasks)}
    proc = run_cli(["-m", "task=glob(mine_*)"], env={**env, "NEMORUN_FAULT": "before-submit:1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    rec = only_experiment(nemorun_home)
    resumed = run_cli(["exp", "rerun", rec.path.name, "--resume"], env=env)
    assert resumed.returncode == 0 and "1 of 2 jobs not yet submitted" in resumed.stdout, resumed.stderr
    assert sorted(_outputs(Experiment(rec.path))) == ["ran-mine_a", "ran-mine_b"]


# -- 4. refusals found at submit time move to resolve: nothing of the launch is sent -------------

TWO_TASKS = """defaults:
  - /_schema_experiment@_here_
  - _self_
name: two
tasks:
  first:
    overrides: [task=hello, task.name=first]
  second:
    overrides: [task=hello, task.name=second, "executor.workdir={workdir}"]
"""


def test_local_missing_workdir_of_the_second_task_sends_nothing(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    conf = tmp_path / "exp-conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "two.yaml").write_text(TWO_TASKS.format(workdir=tmp_path / "missing"))
    proc = run_cli(["--config-dir", str(conf), "experiment=two"], env=cli_env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nemorun: error: job second was not submitted: working directory")
    assert "no job of this launch was sent" in proc.stderr
    rec = only_experiment(nemorun_home)
    first, second = rec.job("first"), rec.job("second")
    assert (first.phase, first.handle, first.attempted_at) == ("rendered", None, None)
    assert second.phase == "failed-to-submit"
    assert not (rec.job_dir("first") / "stdout.log").exists()  # never started


# -- 7. `nemorun exp ...` loads neither Hydra nor the launch machinery ---------------------------

# (that a local job's status loads no IR, OmegaConf or Jinja either: tests/test_left2_session5.py)
HEAVY = ("hydra", "nemorun.launching", "nemorun.compose", "nemorun.plan", "nemorun.python_api", "nemorun.cli")
PROBE = """
import atexit, json, sys
heavy = {heavy!r}
atexit.register(lambda: sys.__stderr__.write("LOADED " + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy)) + "\\n"))
sys.argv = ["nemorun", *{args!r}]
from nemorun.quick import main
main()
"""


@pytest.mark.parametrize("args", [["exp", "list"], ["exp", "status", "latest"], ["exp", "show", "latest"]])
def test_exp_commands_import_no_hydra_or_launching(args: list[str], cli_env: dict[str, str], nemorun_home: Path) -> None:
    """The console script (nemorun.quick:main) as a user's shell runs it."""
    made = run_cli(["task=hello"], env=cli_env)
    assert made.returncode == 0, made.stderr
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY, args=args)], capture_output=True, text=True,
                          env=cli_env, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "hello" in proc.stdout
    loaded = json.loads(proc.stderr.rsplit("LOADED ", 1)[1])
    assert loaded == [], f"nemorun {' '.join(args)} imported {loaded}"


def test_exp_rerun_still_loads_the_launch_machinery_when_it_needs_it(cli_env: dict[str, str], nemorun_home: Path) -> None:
    made = run_cli(["task=hello"], env=cli_env)
    assert made.returncode == 0, made.stderr
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY, args=["exp", "rerun", "latest"])],
                          capture_output=True, text=True, env=cli_env, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "nemorun.launching" in json.loads(proc.stderr.rsplit("LOADED ", 1)[1])
    assert len(list((nemorun_home / "experiments" / "hello").iterdir())) == 2


def test_local_submit_without_bash_is_one_submit_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bash gone between the checks and the start (PATH changed, a removed working directory):
    one SubmitError line, not a FileNotFoundError traceback."""
    from nemorun import submitters
    from nemorun.errors import SubmitError
    from tests.test_submitter_contract import _compile

    job, rendered = submitters.prepare(_compile(["task=hello"], tmp_path))
    Path(job.job_dir).mkdir(parents=True)
    (Path(job.job_dir) / "launch.sh").write_text(rendered.artifacts["launch.sh"])
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(SubmitError, match=r"cannot start job hello with bash in .*: No such file or directory") as err:
        submitters.submitter("local").submit(rendered, job)
    assert "\n" not in str(err.value)
