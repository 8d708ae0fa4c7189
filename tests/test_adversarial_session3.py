"""Adversarial regressions for session 3's new surfaces: each test is an input that once gave a
wrong answer, a traceback or exit 1, and now gets the right answer or ONE ``nemorun: error:`` line
with exit 2. Real CLI processes and real files; no backend is needed (dry runs and local jobs)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemorun import compose, python_api
from nemorun.command import TASK_TABLE
from nemorun.errors import ConfigError
from nemorun.lower import Site
from nemorun.plan import default_site, plan
from nemorun.targets import slurm
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import run_cli, one_line_error


def _plan(overrides: list[str]):  # type: ignore[no-untyped-def]
    with compose.hydra_context() as loader:
        return plan(compose.sweep_batch(overrides), compose.FilesComposer(loader), default_site(),
                    command_overrides=overrides, multirun=True)


# -- sweep-wide keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("swept", ["max_parallel=1,2", "name=a,b", "wait=false,true",
                                   "render_dir=/tmp/r1,/tmp/r2"])
def test_a_sweep_over_a_sweep_wide_key_is_refused(swept: str, nemorun_home: Path) -> None:
    """The plan has ONE experiment name, render folder, limit...: ``max_parallel=1,2`` used to give
    4 jobs under one ``%2``, ``name=a,b`` put every job in experiment ``a``."""
    key = swept.split("=")[0]
    with pytest.raises(ConfigError, match=f"^{key} is one setting of the whole sweep"):
        _plan(["executor=slurm", "task=train", "task.params.seed=0,1", "dryrun=true", swept])


def test_same_sweep_wide_value_in_every_job_is_fine(nemorun_home: Path) -> None:
    the_plan = _plan(["executor=slurm", "task=train", "task.params.seed=0,1,2", "max_parallel=2", "dryrun=true"])
    assert the_plan.array is not None and "#SBATCH --array=0-2%2" in the_plan.array.rendered.artifacts["sbatch.sh"]


def test_dryrun_true_false_submits_nothing(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    """``dryrun=true,false`` used to SUBMIT both jobs (the one asked to be a dry run too)."""
    marker = tmp_path / "ran"
    proc = run_cli(["-m", "task=hello", f"task.inline='touch {marker}'", "dryrun=true,false"], env=cli_env)
    assert "dryrun is one setting of the whole sweep" in one_line_error(proc)
    assert not (nemorun_home / "experiments").exists() and not marker.exists()


@pytest.mark.parametrize("args", [["experiment=prepare_train_eval", "task.params.seed=0,1"],
                                  ["experiment=prepare_train_eval,packed_seeds"]])
def test_an_experiment_file_under_multirun_is_one_line(args: list[str], cli_env: dict[str, str]) -> None:
    """Was ``internal error: AttributeError: 'dict' object has no attribute 'inline'`` (exit 1),
    or 'no task selected' for a launch that plainly selected an experiment."""
    line = one_line_error(run_cli(["-m", *args, "dryrun=true"], env=cli_env))
    assert "cannot be swept with -m" in line


# -- the --help / TAB cache ----------------------------------------------------------------------------


def _quick(args: list[str], env: dict[str, str], comp_line: str | None = None):  # type: ignore[no-untyped-def]
    if comp_line is not None:
        env = {**env, "COMP_LINE": comp_line}
    return run_cli(args, env=env)


def test_damaged_quick_cache_entries_are_misses(cli_env: dict[str, str], nemorun_home: Path) -> None:
    """A truncated ``--help`` entry used to be printed as the help (an empty file: no output,
    exit 0); an index entry of the wrong shape was a TypeError traceback in the prompt."""
    line = "nemorun executor=slurm executor.par"
    want_help = _quick(["--help"], cli_env).stdout
    want_tab = _quick(["-sc", "query=bash"], cli_env, line).stdout
    assert "Usage: nemorun" in want_help and "executor.partition=" in want_tab
    cache = nemorun_home / "cache" / "quick"
    outs, indexes = sorted(cache.glob("*.out")), sorted(cache.glob("*.json"))
    assert outs and indexes
    for damaged in ("", "nemorun: configure a job"):  # truncated to nothing, to half a line
        for f in outs:
            f.write_text(damaged)
        proc = _quick(["--help"], cli_env)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, want_help, "")
    for damaged in ("[1]", '{"groups": {"": 3}, "config": null}', '{"groups": {"": [["x"], 7]}, "config": null}', ""):
        for f in indexes:
            f.write_text(damaged)
        proc = _quick(["-sc", "query=bash"], cli_env, line)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, want_tab, ""), damaged


def test_exp_tab_with_a_damaged_experiment_json(cli_env: dict[str, str], nemorun_home: Path) -> None:
    folder = nemorun_home / "experiments" / "x" / "20260101-000000-000000-abcd"
    folder.mkdir(parents=True)
    (folder / "experiment.json").write_text(json.dumps({"jobs": 5}))
    proc = _quick(["-sc", "query=bash"], cli_env, "nemorun exp logs 20260101 ")
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "", "")


def test_config_dir_that_is_not_utf8_or_holds_a_dangling_link(cli_env: dict[str, str], tmp_path: Path) -> None:
    """A folder name that is not UTF-8 (``\\xff``) was a UnicodeEncodeError traceback for ``--help``
    and exit 1 for a launch (the cache key encoded the path); a dangling ``x.yaml`` link too."""
    conf = Path(os.fsdecode(bytes(tmp_path) + b"/c\xffnf"))
    (conf / "task").mkdir(parents=True)
    (conf / "task" / "mine.yaml").write_text("defaults:\n  - /_schema_task@_here_\n  - _self_\nname: mine\ninline: echo mine\n")
    (conf / "task" / "broken.yaml").symlink_to(tmp_path / "nowhere.yaml")
    for env in (cli_env, {**cli_env, "NEMORUN_CONFIG_PATH": str(conf)}):
        extra = [] if "NEMORUN_CONFIG_PATH" in env else ["--config-dir", str(conf)]
        proc = run_cli([*extra, "--help"], env=env)
        assert proc.returncode == 0 and "mine" in proc.stdout and proc.stderr == "", proc.stderr
        proc = run_cli([*extra, "task=mine", "dryrun=true"], env=env)
        assert proc.returncode == 0 and "echo mine" in proc.stdout, proc.stderr


# -- the catalog ------------------------------------------------------------------------------------------


def test_a_damaged_catalog_row_is_read_again_from_its_folder(cli_env: dict[str, str], nemorun_home: Path) -> None:
    """The catalog is a cache: a row whose swept/states/checked columns do not decode was a
    JSONDecodeError or TypeError traceback in ``exp list``; now the folder answers."""
    import sqlite3

    proc = run_cli(["-m", "task=hello", "task.env.X=1,2", "task.name=sw", "wait=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    want = run_cli(["exp", "list", "--json"], env=cli_env)
    assert want.returncode == 0 and json.loads(want.stdout)[0]["swept"] == ["task.env.X"]
    for columns in ("swept='{not json'", "swept='5', states='[1]'", "checked='yesterday'"):
        with sqlite3.connect(nemorun_home / "catalog.db") as conn:
            conn.execute(f"UPDATE experiments SET {columns}")
        for args in (["exp", "list"], ["exp", "list", "--json"]):
            proc = run_cli(args, env=cli_env)
            assert proc.returncode == 0 and proc.stderr == "", (columns, proc.stderr)
        assert json.loads(proc.stdout) == json.loads(want.stdout)


# -- sweep values into tasks.jsonl ---------------------------------------------------------------------

_PIECES = [*"ab $`\"'\\{}()#;|&<>\n\t\r*?~!./-=%,:[]\u2028\u0085\u00e9\U0001F600", "${", "$(id)", "1.10", "true", "null", "0x10"]
_TEXT = st.one_of(st.lists(st.sampled_from(_PIECES), max_size=8).map("".join),
                  st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12))
_REPORT = "nemorun.examples.ddp.report"  # report(backend: str): a str parameter takes any text


def _array_rows(overrides: list[str], root: Path) -> list[dict]:  # type: ignore[type-arg]
    """Each array task's spec as ITS batch script cuts it from tasks.jsonl (the rendered lines, in bash)."""
    site = Site(experiment_id="20260101-000000-000000-abcd", submit_dir=str(root), home=str(root), python="python3")
    with compose.hydra_context() as loader:
        the_plan = plan(compose.sweep_batch(overrides), compose.FilesComposer(loader), site, multirun=True)
    assert the_plan.array is not None
    remote = Path(slurm.remote_job_dir(the_plan.array.job))
    remote.mkdir(parents=True, exist_ok=True)
    (remote / TASK_TABLE).write_text(the_plan.array.rendered.artifacts[TASK_TABLE])
    script = the_plan.array.rendered.artifacts["sbatch.sh"]
    cut = script[script.index("# this array task's function spec"):script.index("# command")]
    rows = []
    for i in range(len(the_plan.jobs)):
        proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + cut], capture_output=True,
                              env={"SLURM_ARRAY_TASK_ID": str(i), "PATH": os.environ["PATH"]})
        assert proc.returncode == 0, proc.stderr
        rows.append(json.loads((remote / f"function-{i}.yaml").read_text()))
    return rows


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(_TEXT, min_size=2, max_size=3, unique=True))
def test_each_array_task_reads_its_own_value_back(values: list[str]) -> None:
    """A Python sweep (``python_api.sweep_overrides``) of any text through Hydra, the planner and the
    table: task i's spec holds value i exactly. ``${`` once reached jobs 2..n as ``\\${``."""
    if "???" in values:
        return  # OmegaConf's missing marker: refused (tests/test_hardening_property.py)
    axis = python_api.sweep_overrides(python_api.Partial(_REPORT), {"backend": values})
    with tempfile.TemporaryDirectory() as tmp:
        rows = _array_rows(["executor=slurm", "task=function", f"task.target={_REPORT}", *axis], Path(tmp))
    assert [r["params"]["backend"] for r in rows] == values


def test_interpolated_sweep_values_resolve_in_every_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Job 1 is composed (OmegaConf resolves ``${oc.env:...}`` and unescapes ``\\${``); jobs 2..n
    used to get the override's raw text patched in."""
    monkeypatch.setenv("ADV_VALUE", "from-env")
    rows = _array_rows(["executor=slurm", "task=function", f"task.target={_REPORT}",
                        'task.params.backend=b,"\\${x}",${oc.env:ADV_VALUE}'], tmp_path)
    assert [r["params"]["backend"] for r in rows] == ["b", "${x}", "from-env"]


# -- tables people read ------------------------------------------------------------------------------


def _on_a_tty(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdout (the rich table path)."""
    import pty
    import sys

    leader, follower = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "nemorun", *args], stdout=follower, stderr=subprocess.PIPE,
                          env={**env, "COLUMNS": "200"}, timeout=120)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.stderr == b"", proc.stderr
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def test_swept_values_with_control_characters_or_brackets(cli_env: dict[str, str]) -> None:
    """A swept value's newline split a table row in two and its ESC reached the terminal; on a
    terminal, a value like ``[/x]`` was rich markup (a MarkupError traceback)."""
    proc = run_cli(["-m", "task=hello", "task.name=hs", "wait=true",
                    "task.env.X='two\nlines',\"\x1b[31mRED\",'[/x] [bold]b'"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    for command in ("status", "show"):
        piped = run_cli(["exp", command, "latest"], env=cli_env)
        assert piped.returncode == 0 and "\x1b" not in piped.stdout, piped.stderr
        table = piped.stdout[piped.stdout.index("JOB "):].splitlines()
        assert [line.split()[:2] for line in table[1:4]] == [
            ["hs-0", "'two\\nlines'"], ["hs-1", '"\\x1b[31mRED"'], ["hs-2", "'[/x]"]]
        code, shown = _on_a_tty(["exp", command, "latest"], cli_env)
        assert code == 0 and "'two\\nlines'" in shown and "'[/x] [bold]b'" in shown and "\x1b[31mRED" not in shown


def test_live_state_table_shows_hostile_swept_values_as_text() -> None:
    """The live table of a waited sweep (a terminal only): ``[/x]`` was a rich MarkupError in the
    middle of the wait, an ESC went to the terminal."""
    import io

    from rich.console import Console

    from nemorun.progress import StateBoard

    board = StateBoard(["a", "b"], ["task.env.X"], {"a": {"task.env.X": "[/x] \x1b[31mRED"}, "b": {"task.env.X": "two\nlines"}})
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, width=100).print(board.table({}))
    shown = buf.getvalue()
    assert "[/x] \\x1b[31mRED" in shown and "two\\nlines" in shown and "\x1b[31mRED" not in shown


# -- damaged records ----------------------------------------------------------------------------------


def test_resume_of_an_array_whose_table_is_gone(cli_env: dict[str, str], nemorun_home: Path) -> None:
    """A launch killed (SIGKILL) right after recording the array, then its tasks.jsonl deleted:
    ``--resume`` was a FileNotFoundError traceback; now one line, and nothing is sent."""
    proc = run_cli(["-m", "executor=slurm", "task=train", "task.params.seed=0,1,2"], env={**cli_env, "NEMORUN_FAULT": "rendered"})
    assert proc.returncode == -9, proc.stderr
    [folder] = (nemorun_home / "experiments" / "train").iterdir()
    (folder / "jobs" / "train-array" / "tasks.jsonl").unlink()
    line = one_line_error(run_cli(["exp", "rerun", folder.name, "--resume"], env=cli_env))
    assert "array train-array would differ from the recorded one" in line
    assert json.loads((folder / "jobs" / "train-array" / "record.json").read_text())["phase"] != "submitted"


@pytest.mark.parametrize("limit, line", [("2", "#SBATCH --array=0-2%2\n"), ("3", "#SBATCH --array=0-2\n"),
                                         ("4294967296", "#SBATCH --array=0-2\n")])
def test_array_limit_only_when_it_limits(limit: str, line: str, nemorun_home: Path) -> None:
    """``max_parallel=4294967296`` rendered ``%4294967296``, an array spec sbatch refuses (its limit
    is 32-bit); a limit of at least the task count limits nothing and is left out."""
    the_plan = _plan(["executor=slurm", "task=train", "task.params.seed=0,1,2", f"max_parallel={limit}"])
    assert the_plan.array is not None and line in the_plan.array.rendered.artifacts["sbatch.sh"]
    assert the_plan.array.job.array_parallelism == int(limit)  # recorded as given: --resume plans the same


# -- sweep syntax -------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", ["task.env.X=range(0,0)", "task.env.X=glob(*)"])
def test_a_sweep_axis_without_values_is_one_line(axis: str, cli_env: dict[str, str]) -> None:
    """Was exit 0 with no output at all: nothing launched, nothing said."""
    line = one_line_error(run_cli(["-m", "task=hello", axis, "dryrun=true"], env=cli_env))
    assert line == f"nemorun: error: {axis}: the sweep gives no values, so there would be no job to launch"


def test_glob_over_task_options(cli_env: dict[str, str]) -> None:
    """Hydra's ``glob`` of a group's options: was 'ConfigLoader is not set' (exit 2)."""
    proc = run_cli(["-m", "task=glob([hello,train])", "dryrun=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "#   hello-0: task=hello" in proc.stdout and "#   hello-1: task=train" in proc.stdout


@pytest.mark.parametrize("value", ["abc", "null", "1.5", "true"])
def test_max_jobs_of_a_rerun_or_python_sweep_is_checked(value: str) -> None:
    """``exp rerun`` and ``nemorun.launch`` expand sweeps with compose.sweep_batch, which did
    ``int(value)``: abc and null were internal errors (exit 1), 1.5 became 1. The CLI (Hydra's
    own schema) refuses all four."""
    with pytest.raises(ConfigError, match="^hydra.sweeper.max_jobs must be a whole number"):
        compose.sweep_batch(["task=hello", "task.env.X=1,2", f"hydra.sweeper.max_jobs={value}"])


@pytest.mark.parametrize("args", [["exp", "list", "--limit", "abc"], ["exp", "frob"], ["exp", "show"], ["exp"],
                                  ["exp", "list", "--bogus"]])
def test_exp_argument_mistakes_are_one_line(args: list[str], cli_env: dict[str, str]) -> None:
    """argparse printed its usage line and ``nemorun exp list: error: ...``: two lines, another prefix."""
    line = one_line_error(run_cli(args, env=cli_env))
    assert line.endswith("--help)") and line.startswith("nemorun: error: exp")


def test_damaged_compose_cache_entries_are_misses(cli_env: dict[str, str], nemorun_home: Path) -> None:
    """A compose cache entry with a few flipped bytes used to be unpickled: UnicodeDecodeError,
    TypeError, ValueError... an internal error (exit 1) on every launch with those overrides."""
    import pickle
    import random

    args = ["task=hello", "task.env.X=1", "dryrun=true"]
    want = run_cli(args, env=cli_env)
    assert want.returncode == 0, want.stderr
    [entry] = (nemorun_home / "cache" / "compose").glob("*.pkl")
    good = entry.read_bytes()
    rng = random.Random(7)
    flipped = []
    for _ in range(3):
        damaged = bytearray(good)
        for _ in range(3):
            damaged[rng.randrange(32, len(damaged))] = rng.randrange(256)
        flipped.append(bytes(damaged))
    # a string that is not UTF-8 (UnicodeDecodeError), a pickle of something else than a config
    for data in (b"\x80\x05\x8c\x02\xff\xfe\x94.", pickle.dumps(5), *flipped):
        entry.write_bytes(data)
        proc = run_cli(args, env=cli_env)
        assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
        new_id = re.compile(r"\d{8}-\d{6}-\d{6}-[0-9a-f]{4}")  # each dry run names a new experiment id
        assert new_id.sub("ID", proc.stdout) == new_id.sub("ID", want.stdout)


def test_help_lists_an_option_file_whose_name_is_not_utf8(cli_env: dict[str, str], tmp_path: Path) -> None:
    """``task/m\\xffine.yaml`` in a --config-dir: Hydra lists it byte for byte; caching that answer
    was a UnicodeEncodeError traceback. Cold, warm and uncached answers are the same bytes."""
    import sys

    conf = tmp_path / "conf"
    (conf / "task").mkdir(parents=True)
    Path(os.fsdecode(bytes(conf) + b"/task/m\xffine.yaml")).write_text(
        "defaults:\n  - /_schema_task@_here_\n  - _self_\nname: mine\ninline: echo mine\n")

    def help_bytes(env: dict[str, str]) -> bytes:
        proc = subprocess.run([sys.executable, "-m", "nemorun", "--config-dir", str(conf), "--help"], env=env,
                              capture_output=True, timeout=120)
        assert (proc.returncode, proc.stderr) == (0, b""), proc.stderr
        return proc.stdout

    cold, warm = help_bytes(cli_env), help_bytes(cli_env)
    assert b"m\xffine" in cold and cold == warm == help_bytes({**cli_env, "NEMORUN_COMPOSE_CACHE": "0"})


@pytest.mark.slurm
def test_a_damaged_cluster_options_cache_is_asked_again(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    """The per-cluster option cache (a day) with a string where a list belongs was read as one
    option per character: every job on that cluster was refused ('has no option --job-name')."""
    args = ["executor=slurm", "task=hello", f"executor.job_dir={tmp_path / 'jobs'}"]
    first = run_cli(args, env=cli_env)
    assert first.returncode == 0, first.stderr
    [cache] = sorted((Path(cli_env["NEMORUN_HOME"]) / "cache" / "slurm").glob("*.json"))
    data = json.loads(cache.read_text())
    cache.write_text(json.dumps({**data, "sbatch": "".join(data["sbatch"])}))
    again = run_cli(args, env=cli_env)
    assert again.returncode == 0, again.stderr
    assert json.loads(cache.read_text())["sbatch"] == data["sbatch"]


@pytest.mark.slurm
def test_a_packed_sweep_shows_each_tasks_values(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    """``allocation=NAME`` sweep: the steps' records had no overrides, so ``exp status`` listed every
    override (executor, task, steps, wait...) as a swept column, filled only on the allocation row."""
    proc = run_cli(["-m", "executor=slurm", "task=train", "task.params.steps=1", "task.params.seed=0,1", "allocation=packed",
                    f"executor.job_dir={tmp_path}", "wait=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    status = run_cli(["exp", "status", "latest"], env=cli_env).stdout.splitlines()
    assert status[1].split()[:2] == ["JOB", "seed"] and status[1].split()[2] == "STATE"
    assert [line.split()[:2] for line in status[2:5]] == [["packed", "-"], ["train-0", "0"], ["train-1", "1"]]
    listed = json.loads(run_cli(["exp", "list", "--json"], env=cli_env).stdout)
    assert listed[0]["swept"] == ["task.params.seed"]
