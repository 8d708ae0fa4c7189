"""Adversarial regressions for session 4: each test is an input that once gave a wrong answer, a
traceback, a silent no-op, a leaked secret or a lost record, and now gets the right answer or ONE
``nemorun: error:`` line. Real CLI processes, real files and real local jobs; Slurm plans are
recorded without a cluster except in the one ``slurm`` test (the real test cluster); the Run:ai
service is the local contract server of tests/dgxcloud_runai_server.py."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemorun import compose, execute, lower, python_api
from nemorun.api import Experiment, experiments
from nemorun.errors import ConfigError
from nemorun.packaging import Packages
from nemorun.plan import plan
from tests.dgxcloud_runai_server import RunaiServer
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import PINNED_SITE, compose_config, run_cli, one_line_error, ok
from tests.test_secrets_hardening import SECRET, dgx_args, leaks, runai  # noqa: F401 - runai is a fixture


# -- 1a: an experiment file's tasks are not a sweep --------------------------------------------------


def test_experiment_file_tasks_are_not_sweep_columns(cli_env: dict[str, str]) -> None:
    """prepare_train_eval's tasks differ by design (task=hello vs task=train): ``exp list`` showed
    ``task,name,inline,steps`` as SWEEP and ``exp status``/``show`` as swept columns."""
    ok(run_cli(["experiment=prepare_train_eval", "wait=true"], env=cli_env))
    [row] = json.loads(ok(run_cli(["exp", "list", "--json"], env=cli_env)).stdout)
    assert (row["kind"], row["swept"]) == ("experiment", [])
    listed = ok(run_cli(["exp", "list"], env=cli_env)).stdout.splitlines()
    assert listed[1].split()[5] == "-"  # the SWEEP column
    status = json.loads(ok(run_cli(["exp", "status", "latest", "--json"], env=cli_env)).stdout)
    assert status["swept"] == [] and {j["values"] == {} for j in status["jobs"].values()} == {True}
    table = ok(run_cli(["exp", "status", "latest"], env=cli_env)).stdout.splitlines()
    assert table[1].split() == ["JOB", "STATE", "EXIT", "HANDLE", "DETAIL"]
    shown = ok(run_cli(["exp", "show", "latest"], env=cli_env)).stdout
    [header] = [line for line in shown.splitlines() if line.startswith("JOB ")]
    assert header.split()[:2] == ["JOB", "PHASE"]


def test_a_sweep_still_has_its_columns(cli_env: dict[str, str]) -> None:
    ok(run_cli(["-m", "task=hello", "task.name=sw", "task.env.X=1,2", "wait=true"], env=cli_env))
    [row] = json.loads(ok(run_cli(["exp", "list", "--json"], env=cli_env)).stdout)
    assert (row["kind"], row["swept"]) == ("sweep", ["task.env.X"])


# -- 1b: exp list --limit ---------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["-1", "-7", "abc", "1.5", "", "0x10"])
def test_exp_list_limit_mistakes_are_one_line(limit: str, cli_env: dict[str, str]) -> None:
    """``--limit -1`` listed everything (SQLite's "no limit"); now every non-count is refused."""
    line = one_line_error(run_cli(["exp", "list", f"--limit={limit}"], env=cli_env))
    assert line.startswith("nemorun: error: exp list: argument --limit: must be a whole number >= 0 (0 = all)")


@pytest.mark.parametrize("limit, shown", [("0", 3), ("2", 2), ("99999999999999999999", 3), ("9223372036854775807", 3)])
def test_exp_list_limit_counts(limit: str, shown: int, cli_env: dict[str, str]) -> None:
    """A limit past SQLite's 64-bit integers was a sqlite3 IntegrityError traceback (exit 1)."""
    for i in range(3):
        ok(run_cli(["task=hello", f"task.name=h{i}", "wait=true"], env=cli_env))
    rows = json.loads(ok(run_cli(["exp", "list", "--limit", limit, "--json"], env=cli_env)).stdout)
    assert [r["name"] for r in rows] == ["h2", "h1", "h0"][:shown]


@pytest.mark.parametrize("limit", [-1, 1.5, "2", True])
def test_python_experiments_limit_is_checked(limit: object, nemorun_home: Path) -> None:
    nemorun_home.mkdir(parents=True)
    with pytest.raises(ConfigError, match="^limit must be a whole number >= 0"):
        experiments(limit=limit, home=nemorun_home)  # type: ignore[arg-type]


# -- 1c: --resume of an allocation keeps each step's overrides ------------------------------------


def test_resume_writes_missing_step_records_with_their_overrides(cli_env: dict[str, str], nemorun_home: Path) -> None:
    """Killed between the jobs' batch and their steps' batch (here: the step's record removed after
    a kill at ``rendered``): ``--resume`` never wrote the step's record, and on submission made
    one without overrides. The resume's reconciliation (before anything is sent) writes it as a
    fresh launch does."""
    proc = run_cli(["experiment=train_with_server"], env={**cli_env, "NEMORUN_FAULT": "rendered"})
    assert proc.returncode == -9, proc.stderr
    exp = Experiment.load("latest", home=nemorun_home)
    fresh = {t: exp.record.job(t).overrides for t in ("trainer", "server")}
    assert "task.name=server" in fresh["server"] and "task=ddp" in fresh["trainer"]
    (exp.record.job_dir("server") / "record.json").unlink()
    meta = exp.meta
    site = lower.Site(experiment_id=meta["id"], submit_dir=meta["submit_dir"], home=str(nemorun_home), python=sys.executable)
    with compose.hydra_context() as loader:  # as nemorun.launching.resume plans it
        the_plan = plan([list(meta["overrides"])], compose.FilesComposer(loader), site,
                        command_overrides=meta["overrides"], packages=Packages(site, record_dir=exp.path))
    execute._reconcile(the_plan, exp.record, io.StringIO())
    assert {t: exp.record.job(t).overrides for t in ("trainer", "server")} == fresh


# -- 1d: Python API mapping keys arrive as typed -------------------------------------------------------

def takes_mapping(backend: dict) -> int:  # type: ignore[type-arg]
    """A function task with a mapping parameter (the IR holds what it would be called with)."""
    return len(backend)


_SHOW = f"{__name__}.takes_mapping"


@pytest.mark.parametrize("key, arrives", [("1", "1"), ("null", "None"), ("true", "True"), ("1e3", "1000.0"),
                                          ("1_0", "10"), ("nan", "nan"), ("NULL", "None")])
def test_a_mapping_key_hydra_would_retype_is_refused(key: str, arrives: str) -> None:
    """``Partial(fn, d={'1': 'a'})`` was written ``task.params.d={1: a}``: the IR and config.yaml
    held the int key 1 (null: None, 1e3: 1000.0), not the string the Python code passed."""
    task = python_api.Partial(_SHOW, backend={key: "a"})
    with pytest.raises(ConfigError, match=f"^mapping key '{key}' would arrive as {arrives} "):
        python_api.task_overrides(task)
    with pytest.raises(ConfigError, match=f"^mapping key '{key}' would arrive as"):
        python_api.task_overrides(python_api.Partial(_SHOW, backend={"outer": {key: 1}}))


@pytest.mark.parametrize("key", [1, 2.5, None, True, ("a",)])
def test_a_mapping_key_that_is_not_a_string_is_refused(key: object) -> None:
    """An int key was turned into the string '1' without a word."""
    task = python_api.Partial(_SHOW, backend={key: "a"})
    with pytest.raises(ConfigError, match=r"^mapping key .* would reach the function as the string"):
        python_api.task_overrides(task)


def test_mapping_keys_that_read_back_reach_the_ir_as_strings() -> None:
    keys = {"01": 1, "k1": 2, "a-b": 3, "a.b": 4, "a/b": 5, "0x10": 6, "yes": 7}
    overrides = python_api.job_overrides(python_api.Partial(_SHOW, backend=keys))
    job = lower.compile_job(compose_config(compose.free_form_overrides(overrides)), PINNED_SITE)
    assert job.task.params["backend"] == keys
    assert all(type(k) is str for k in job.task.params["backend"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.from_regex(r"[A-Za-z0-9_/][A-Za-z0-9_./-]{0,8}", fullmatch=True))
def test_any_mapping_key_arrives_as_the_same_string_or_is_refused(key: str) -> None:
    """The property behind the two tests above, over keys the override grammar can spell."""
    try:
        overrides = python_api.job_overrides(python_api.Partial(_SHOW, backend={key: "v"}))
    except ConfigError as exc:
        assert str(exc).startswith(f"mapping key {key!r} would arrive as")
        return
    job = lower.compile_job(compose_config(compose.free_form_overrides(overrides)), PINNED_SITE)
    [(got, value)] = job.task.params["backend"].items()
    assert (type(got), got, value) == (str, key, "v")


# -- 1e: hydra.launcher.max_parallel ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5", "[1]", "1e3"])
def test_launcher_max_parallel_mistakes_name_the_override(value: str, cli_env: dict[str, str]) -> None:
    """0 and -1 said ``max_parallel must be ...``: a key the user did not write."""
    line = one_line_error(run_cli(["-m", "task=hello", "task.env.X=1,2", f"hydra.launcher.max_parallel={value}",
                                    "dryrun=true"], env=cli_env))
    assert "hydra.launcher.max_parallel" in line


@pytest.mark.parametrize("args", [["task=hello"], ["experiment=prepare_train_eval"]])
def test_launcher_max_parallel_on_a_single_run_is_refused(args: list[str], cli_env: dict[str, str]) -> None:
    """``max_parallel=2`` on one job is refused; ``hydra.launcher.max_parallel=2`` was silently ignored."""
    line = one_line_error(run_cli([*args, "hydra.launcher.max_parallel=2", "dryrun=true"], env=cli_env))
    assert line.startswith("nemorun: error: hydra.launcher.max_parallel limits how many jobs of a sweep run at once")
    with pytest.raises(ConfigError, match="^hydra.launcher.max_parallel limits"):
        python_api_launch([*args, "hydra.launcher.max_parallel=2", "dryrun=true"])


def test_launcher_max_parallel_on_a_rerun_of_a_single_run_is_refused(cli_env: dict[str, str], nemorun_home: Path) -> None:
    """``exp rerun ID hydra.launcher.max_parallel=2`` of a single run ran the job and ignored it."""
    ok(run_cli(["task=hello", "task.name=one", "wait=true"], env=cli_env))
    line = one_line_error(run_cli(["exp", "rerun", "latest", "hydra.launcher.max_parallel=2"], env=cli_env))
    assert line.startswith("nemorun: error: hydra.launcher.max_parallel limits")
    assert len(experiments(home=nemorun_home)) == 1


def python_api_launch(overrides: list[str]) -> None:
    import nemorun

    nemorun.launch(overrides, out=io.StringIO())


def test_resume_keeps_the_lanes_of_launcher_max_parallel(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    """``-m ... hydra.launcher.max_parallel=1`` killed after recording: Hydra keeps hydra.* out of
    the task overrides, so the record lacked it and ``--resume`` started every job at once.
    Job i checks that job i-1 ended before it started (each lane waits for its predecessor)."""
    script = tmp_path / "lane.sh"
    marks = tmp_path / "marks"
    marks.mkdir()
    script.write_text(f'if [ "$X" != 0 ] && [ ! -f {marks}/$((X-1)) ]; then touch {marks}/overlap$X; fi\n'
                      f"sleep 0.5\ntouch {marks}/$X\n")
    args = ["-m", "task=hello", "task.name=lanes", f"task.inline='bash {script}'", "task.env.X=0,1,2",
            "hydra.launcher.max_parallel=1"]
    proc = run_cli(args, env={**cli_env, "NEMORUN_FAULT": "rendered"})
    assert proc.returncode == -9, proc.stderr
    exp = Experiment.load("latest", home=nemorun_home)
    assert "hydra.launcher.max_parallel=1" in exp.meta["overrides"]
    ok(run_cli(["exp", "rerun", exp.id, "--resume"], env=cli_env))
    assert {s.state.value for s in exp.wait(poll=0.2).values()} == {"SUCCEEDED"}
    assert sorted(p.name for p in marks.iterdir()) == ["0", "1", "2"]


# -- secrets a service echoes into a job's state -------------------------------------------------


def test_a_status_detail_echoing_the_secret_reaches_no_output_and_no_file(
        runai: RunaiServer, cli_env: dict[str, str], nemorun_home: Path) -> None:
    """The Run:ai contract server (tests/dgxcloud_runai_server.py) reports a phase that quotes the
    app secret: ``exp status`` printed it in DETAIL and wrote it into record.json (errors were
    scrubbed, a job's state detail was not)."""
    cli_env["DGX_APP_SECRET"] = SECRET
    ok(run_cli(dgx_args(runai), env=cli_env))
    [workload] = list(runai.state.workloads)
    runai.set_phase(workload, f"Failed: {SECRET}")
    status = ok(run_cli(["exp", "status", "latest"], env=cli_env))
    listed = ok(run_cli(["exp", "list"], env=cli_env))
    assert "Failed: ***" in status.stdout
    assert leaks(nemorun_home, [SECRET], status.stdout, status.stderr, listed.stdout) == []


# -- text no record, script or environment can hold ------------------------------------------------


@pytest.mark.parametrize("args", [["task=hello", b"task.inline='echo a\xffb'", "wait=true"],
                                  ["task=hello", b"task.env.V='a\xffb'"],
                                  ["-m", "task=hello", b"task.env.V='a\xffb',c", "dryrun=true"]])
def test_an_override_that_is_not_utf8_is_one_line(args: list, cli_env: dict[str, str], nemorun_home: Path) -> None:  # type: ignore[type-arg]
    """A quoted non-UTF-8 byte in argv was ``internal error: UnicodeEncodeError`` (exit 1) once the
    job's files were written, after the experiment was recorded."""
    import subprocess

    argv = [sys.executable.encode(), b"-m", b"nemorun", *(a if isinstance(a, bytes) else a.encode() for a in args)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=cli_env, timeout=120)
    assert "is not UTF-8 text" in one_line_error(proc)
    assert not (nemorun_home / "experiments").exists()


@pytest.mark.parametrize("value", ["a\0b", "\udcff", "ok\udc80"])
@pytest.mark.parametrize("where", ["inline", "env", "args"])
def test_python_api_text_with_nul_or_surrogates_is_refused(value: str, where: str, nemorun_home: Path) -> None:
    """``Script(inline='echo a\\0b')`` ran ``echo ab`` (bash drops the NUL); a lone surrogate was a
    UnicodeEncodeError traceback after the record was created."""
    import nemorun

    task = {"inline": lambda: nemorun.Script(inline=f"echo {value}"),
            "env": lambda: nemorun.Script(inline="echo $V", env={"V": value}),
            "args": lambda: nemorun.Script(path="run.sh", args=[value])}[where]()
    with pytest.raises(ConfigError, match="holds a NUL character|is not UTF-8 text"):
        nemorun.run(task, detach=False, out=io.StringIO())
    assert not (nemorun_home / "experiments").exists()


def test_a_very_long_name_is_not_echoed_whole(cli_env: dict[str, str]) -> None:
    """A 100,000-character experiment name was repeated whole in the error line."""
    line = one_line_error(run_cli(["task=hello", f"name={'x' * 100_000}", "dryrun=true"], env=cli_env))
    assert "at most 64 characters" in line and "(100000 characters)" in line and len(line) < 600
    import nemorun

    with pytest.raises(ConfigError, match=r"\(100000 characters\)"):
        nemorun.run(nemorun.Script(inline="true"), name="y" * 100_000, dryrun=True, out=io.StringIO())


# -- a damaged config.yaml ---------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["gone", "not utf-8", "cut short", "empty", "a list"])
def test_rerun_and_show_of_a_damaged_config_yaml(damage: str, cli_env: dict[str, str], nemorun_home: Path) -> None:
    """config.yaml gone or not UTF-8: ``exp show`` was a traceback, ``exp rerun`` an internal error;
    cut short, a rerun ran with whatever half of the config survived."""
    ok(run_cli(["task=hello", "task.name=dmg", "task.env.X=1", "wait=true"], env=cli_env))
    exp = Experiment.load("latest", home=nemorun_home)
    config = exp.path / "config.yaml"
    good = config.read_bytes()
    {"gone": lambda: config.unlink(), "not utf-8": lambda: config.write_bytes(b"\xff\xfe" + good),
     "cut short": lambda: config.write_bytes(good[: len(good) // 2]), "empty": lambda: config.write_bytes(b""),
     "a list": lambda: config.write_bytes(b"- 1\n")}[damage]()
    shown = ok(run_cli(["exp", "show", exp.id], env=cli_env))
    assert "task.env.X=1" in shown.stdout and "JOB " in shown.stdout and shown.stderr == ""
    proc = run_cli(["exp", "rerun", exp.id], env=cli_env)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"nemorun: error: experiment record damaged: {config} ")
    assert [r["id"] for r in experiments(home=nemorun_home)] == [exp.id]  # nothing launched


# -- error lines quote what the user typed: no raw control character -----------------------------


@pytest.mark.parametrize("args", [["-m", "executor=slurm", "task=hello", "task.env.X=1,2", "allocation=a\x1b[31mb", "dryrun=true"],
                                  ["task=hello", "task.name=a\x1b]0;title\x07", "dryrun=true"],
                                  ["exp", "show", "x\x1b[2Jy"], ["exp", "list", "--limit", "\x1b[31m"]])
def test_error_lines_escape_control_characters(args: list[str], cli_env: dict[str, str]) -> None:
    """``allocation=a<ESC>b`` was refused with a line whose "write it as ..." held the raw ESC (and
    ``exp show <ESC>...`` echoed the id raw): the terminal obeyed it."""
    line = one_line_error(run_cli(args, env=cli_env))
    assert "\x1b" not in line and "\x07" not in line and "\\x1b" in line


@pytest.mark.parametrize("values", ["0.1", b"ab", 5, {"a": 1}, None])
def test_a_sweep_axis_that_is_not_a_list_is_refused(values: object) -> None:
    """``add_sweep(task, {"backend": "ab"})`` swept 'a' and 'b' (a string is iterable)."""
    with pytest.raises(ConfigError, match="^sweep axis 'backend': give a list of values"):
        python_api.sweep_overrides(python_api.Partial(_SHOW), {"backend": values})  # type: ignore[dict-item]


def test_a_sweep_axis_may_be_any_iterable() -> None:
    task = python_api.Partial(_SHOW)
    assert python_api.sweep_overrides(task, {"backend": (v for v in ("a", "b"))}) == ["task.params.backend=a,b"]
    assert python_api.sweep_overrides(task, {"backend": range(2)}) == ["task.params.backend=0,1"]


@pytest.mark.slurm
def test_resume_on_slurm_gives_a_lost_step_record_its_overrides(slurm_cluster: SlurmCluster, cli_env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    """The same kill as above, resumed for real on the test cluster: the step's record comes back
    with its own overrides and its step handle, and its output is its own."""
    from tests.test_slurm_groups import _conf, _slurm, _ssh

    args = [*_conf(tmp_path, f"""\
        a: {{allocation: pair, overrides: {_slurm('a', "task.inline='echo a'")}}}
        b: {{allocation: pair, overrides: {_slurm('b', "task.inline='echo b'")}}}
        """), *_ssh(slurm_cluster)]
    proc = run_cli(args, env={**cli_env, "NEMORUN_FAULT": "rendered"})
    assert proc.returncode == -9, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    fresh = exp.record.job("b").overrides
    assert "task.name=b" in fresh
    (exp.record.job_dir("b") / "record.json").unlink()
    # --resume plans from the config files: the experiment option's folder must be found again
    ok(run_cli(["exp", "rerun", exp.id, "--resume"], env={**cli_env, "NEMORUN_CONFIG_PATH": str(tmp_path / "conf")}))
    job_id = exp.record.job("pair").handle["id"]
    assert (exp.record.job("b").overrides, exp.record.job("b").handle["id"]) == (fresh, f"{job_id}:b")
    assert {n: s.state.value for n, s in exp.wait(poll=0.5).items()} == dict.fromkeys(["pair", "a", "b"], "SUCCEEDED")
    assert ok(run_cli(["exp", "logs", exp.id, "b"], env=cli_env)).stdout.strip() == "b"
