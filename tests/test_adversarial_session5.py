"""Adversarial regressions for session 5: each test is an input that once gave a wrong answer, a
traceback, a leaked secret or a lost record, and now gets the right answer or ONE
``nemorun: error:`` line. Real CLI processes, real files and real local jobs; the ``slurm`` tests
run on the real test cluster (``slurm_cluster`` fixture: slurmctld, slurmd and sshd)."""
from __future__ import annotations

import io
import json
import os
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nemorun
from nemorun import python_api
from nemorun.api import Experiment
from nemorun.command import TASK_TABLE
from nemorun.errors import ConfigError
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import run_cli, one_line_error, ok
from tests.test_hardening_store import small_tmpfs  # noqa: F401 - a fixture


# A function the sweep's jobs call on the node: it prints what it was called with, as JSON.
SHOW = textwrap.dedent("""\
    import json

    def show(value=None) -> int:
        print("ROW " + json.dumps(value))
        return 0
    """)


def _rows(logs: str) -> list:  # type: ignore[type-arg]
    return [json.loads(line[4:]) for line in logs.splitlines() if line.startswith("ROW ")]


# -- a sweep of mapping values: Hydra MERGES a mapping, so job i kept job 0's keys -------------------


@pytest.mark.parametrize("executor, artifact", [("local", "function.yaml"), ("slurm", TASK_TABLE)])
def test_a_swept_mapping_is_not_merged_into_the_first_jobs(executor: str, artifact: str, cli_env: dict[str, str],
                                                           tmp_path: Path) -> None:
    """``task.params.value={a: x, b: 1},{a: y},{c: 3}``: job 1 got ``{a: y, b: 1}`` and job 2
    ``{a: y, b: 1, c: 3}`` (each job's override was merged by Hydra into the config patched for the
    jobs before it), where ``task.params.value={a: y}`` alone gives ``{a: y}``. Local jobs and the
    Slurm array's table alike."""
    (tmp_path / "mymod.py").write_text(SHOW)
    out = tmp_path / "out"
    ok(run_cli(["-m", f"executor={executor}", "task=function", "task.target=mymod.show",
                 "task.params.value={a: x, b: 1},{a: y},{c: 3}", "dryrun=true", f"render_dir={out}"],
                env=cli_env, cwd=str(tmp_path)))
    if executor == "slurm":
        [table] = out.glob(f"*/{artifact}")
        rows = [json.loads(line)["params"]["value"] for line in table.read_text().splitlines()]
    else:
        rows = [json.loads((out / f"function-{i}" / artifact).read_text())["params"]["value"] for i in range(3)]
    assert rows == [{"a": "x", "b": 1}, {"a": "y"}, {"c": 3}]


def test_a_swept_mapping_runs_as_typed_and_its_rerun_is_refused(cli_env: dict[str, str], tmp_path: Path,
                                                               nemorun_home: Path) -> None:
    """The same sweep run for real; ``exp rerun`` starts from the FIRST job's stored config, where
    Hydra merged job 0's mapping: job 1 would again get ``{a: y, b: 1}``. Refused in one line,
    nothing launched; a rerun that sets plain values still runs."""
    (tmp_path / "mymod.py").write_text(SHOW)
    ok(run_cli(["-m", "task=function", "task.target=mymod.show", "task.params.value={a: x, b: 1},{a: y}", "wait=true"],
                env=cli_env, cwd=str(tmp_path)))
    exp = Experiment.load("latest", home=nemorun_home)
    assert [_rows("".join(exp.logs(f"function-{i}"))) for i in range(2)] == [[{"a": "x", "b": 1}], [{"a": "y"}]]
    for extra in ([], ["task.params.value={z: 1}"]):
        line = one_line_error(run_cli(["exp", "rerun", exp.id, *extra], env=cli_env, cwd=str(tmp_path)))
        assert "a sweep rerun applies each job's values to the first job's stored config" in line
    assert len(nemorun.experiments(home=nemorun_home)) == 1
    ok(run_cli(["exp", "rerun", exp.id, "task.params.value=1,2", "wait=true"], env=cli_env, cwd=str(tmp_path)))
    again = Experiment.load("latest", home=nemorun_home)
    assert [_rows("".join(again.logs(f"function-{i}"))) for i in range(2)] == [[1], [2]]


# -- the Slurm array's table: every value reaches its task exactly as typed ----------------------------

NASTY = ["a\tb", "line1\nline2", "cr\rlf\r\n", "back\\slash\\", "", " ", "1.10", "true", "null", "007", "1e3", "~",
         "$(touch /tmp/nemorun-adv5) `id` ;# {p;q}", "'\"", "\x1b[31mred", "\u2028\u2029\x85", "%a %A %j",
         "x" * 100_000, "é 你 \U0001f600"]


@pytest.mark.slurm
def test_array_tasks_get_nasty_strings_exactly(slurm_cluster: SlurmCluster, nemorun_home: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python API sweep as ONE job array on the real cluster: tab, newline, CR, backslash, empty,
    a 100,000-character string, text that reads as a number/bool/null, shell and sed syntax, line
    separators: array task i prints exactly value i (as JSON), and nothing was executed."""
    (tmp_path / "mymod.py").write_text(SHOW)
    monkeypatch.chdir(tmp_path)
    executor = nemorun.SlurmExecutor(time="00:05:00", packager=nemorun.PatternPackager(include_pattern="mymod.py"))
    sweep = nemorun.Experiment("adv-nasty", executor=executor)
    sweep.add_sweep(nemorun.Partial("mymod.show"), grid={"value": NASTY})
    sweep.run(out=io.StringIO())
    [(array, tasks)] = sweep.meta["arrays"].items()
    assert len(tasks) == len(NASTY)
    assert {s.state.value for s in sweep.wait(poll=0.5).values()} == {"SUCCEEDED"}
    assert [_rows("".join(sweep.logs(name))) for name in tasks] == [[v] for v in NASTY]
    assert not Path("/tmp/nemorun-adv5").exists()


# -- render_dir and NEMORUN_HOME that cannot be written -------------------------------------------------


@pytest.mark.parametrize("where, why", [("a-file", "is a file, not a folder"), ("a-file/sub", "cannot be written: Not a directory"),
                                        ("/dev/null", "is a file, not a folder"),
                                        ("/proc/self", "cannot be written: cannot write /proc/self/launch.sh")])
def test_render_dir_that_cannot_be_written_is_one_line(where: str, why: str, cli_env: dict[str, str], tmp_path: Path,
                                                       nemorun_home: Path) -> None:
    """An existing file (or a path under one, or in /proc) as render_dir was ``internal error:
    FileExistsError`` / ``NotADirectoryError`` (exit 1); a real launch stops there too, before its record."""
    (tmp_path / "a-file").write_text("keep me\n")
    for extra in (["dryrun=true"], []):
        line = one_line_error(run_cli(["task=hello", f"render_dir={where}", *extra], env=cli_env, cwd=str(tmp_path)))
        assert line.startswith(f"nemorun: error: render_dir={where!r} {why}"), line
    assert (tmp_path / "a-file").read_text() == "keep me\n" and not (nemorun_home / "experiments").exists()


@pytest.mark.parametrize("folder", ["x#y", "it's", "br[1]", "e=q", "${oc.env:HOME}", "a,b", "1.10", "sp ace"])
def test_python_dryrun_render_dir_is_a_path_not_override_syntax(folder: str, tmp_path: Path, nemorun_home: Path) -> None:
    """``Experiment.dryrun(render_dir=...)`` pasted the path into ``render_dir=<path>``: ``#``, a
    quote, ``[..]`` or ``=`` were a parse error about an override the caller never wrote, and
    ``${oc.env:HOME}`` wrote into the folder named by $HOME."""
    exp = nemorun.Experiment("rd")
    exp.add(nemorun.Script(inline="echo hi"))
    exp.dryrun(render_dir=tmp_path / folder, out=io.StringIO())
    assert (tmp_path / folder / "launch.sh").is_file()
    assert {p.name for p in tmp_path.iterdir()} - {nemorun_home.name} == {folder}  # nowhere else


def test_full_disk_while_recording_a_sweep_leaves_no_half_experiment(small_tmpfs: Path, tmp_path: Path) -> None:
    """A 2,000-task array sweep on a disk with room for experiment.json but not for the tasks'
    records: the launch failed in one line, yet left an experiment listing 2,000 UNSUBMITTED jobs
    that had no record. Nothing was sent, so nothing is kept (as when experiment.json itself fails)."""
    env = {**os.environ, "NEMORUN_HOME": str(small_tmpfs)}
    ok(run_cli(["task=hello", "task.name=keep", "wait=true"], env=env, cwd=str(tmp_path)))
    filler = small_tmpfs / "filler"
    free = os.statvfs(small_tmpfs).f_bavail * os.statvfs(small_tmpfs).f_frsize
    filler.write_bytes(b"\0" * max(0, free - 384 * 1024))  # room for the experiment's own files only
    proc = run_cli(["-m", "executor=slurm", "task=train", "task.params.seed=range(0,2000)"], env=env, cwd=str(tmp_path))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "record.json: No space left on device" in proc.stderr
    assert [p.name for p in (small_tmpfs / "experiments").iterdir()] == ["keep"]
    filler.unlink()
    assert [r["name"] for r in nemorun.experiments(home=small_tmpfs)] == ["keep"]


# -- secrets a service echoes back at submission -------------------------------------------------------

KUBE_TOKEN = "kube-T0ken/Secr3t+value=="


@pytest.fixture
def echoing_kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The Kubernetes contract server of tests/kube_fake.py in its echo mode: every refusal
    quotes the request's Authorization header (the kubeconfig's bearer token)."""
    from tests.kube_fake import FakeKube, serving

    with serving(FakeKube(forbidden_namespaces={"locked"}, echo_credentials=True), tmp_path / "kc0", monkeypatch) as fake:
        yield fake


def test_kubeflow_refusal_echoing_the_bearer_token_reaches_no_output_and_no_file(
        echoing_kube, cli_env: dict[str, str], tmp_path: Path, nemorun_home: Path) -> None:  # type: ignore[no-untyped-def]
    """A 403 whose message quotes ``Authorization: Bearer <kubeconfig token>``: nemorun printed
    the token on stderr and wrote it into the job's record (no kubeconfig credential was ever
    registered with the scrubber). Then ``exp status`` of a job the server refuses to read."""
    from tests.test_kubeflow_submit import PACKAGED
    from tests.test_secrets_hardening import leaks

    env = dict(cli_env, KUBECONFIG=str(echoing_kube.kubeconfig(tmp_path / "kc", token=KUBE_TOKEN)))
    proc = run_cli([*PACKAGED, "executor.namespace=locked"], env=env)
    assert proc.returncode == 1 and "403 Forbidden" in proc.stderr, proc.stderr
    assert "(request: Authorization: ***)" in proc.stderr, proc.stderr
    assert leaks(nemorun_home, [KUBE_TOKEN], proc.stdout, proc.stderr) == []
    ok(run_cli(PACKAGED, env=env))
    echoing_kube.forbidden_namespaces.add("default")
    status = run_cli(["exp", "status", "latest"], env=env)
    assert leaks(nemorun_home, [KUBE_TOKEN], status.stdout, status.stderr) == []


def test_skypilot_endpoint_password_reaches_no_output_and_no_file(cli_env: dict[str, str], tmp_path: Path,
                                                                 nemorun_home: Path) -> None:
    """SkyPilot's basic auth is the endpoint URL (``http://user:password@host``), and the SDK's
    own error quotes it whole (``Could not connect to SkyPilot API server at http://user:pw@...``):
    the password reached stderr, the job's record and ``exp status``. The real SkyPilot SDK, no
    server on the port."""
    pytest.importorskip("sky")
    from tests.test_secrets_hardening import leaks

    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    password = "S3cret/Pa55+word"
    env = dict(cli_env, HOME=str(tmp_path / "home"),
               SKYPILOT_API_SERVER_ENDPOINT=f"http://alice:{password.replace('/', '%2F').replace('+', '%2B')}@127.0.0.1:{port}")
    proc = run_cli(["executor=skypilot", "task=hello"], env=env, timeout=300)
    assert proc.returncode == 1 and "Could not connect" in proc.stderr and "alice:***@" in proc.stderr, proc.stderr
    status = run_cli(["exp", "status", "latest"], env=env, timeout=300)
    assert leaks(nemorun_home, [password, env["SKYPILOT_API_SERVER_ENDPOINT"].split(":")[2].split("@")[0]],
                 proc.stdout, proc.stderr, status.stdout, status.stderr) == []


# -- kill -9 at each fault point on paths the earlier crash tests do not take, then --resume --------------


def _killed(args: list[str], env: dict[str, str], fault: str, cwd: str | None = None) -> Experiment:
    proc = run_cli(args, env=dict(env, NEMORUN_FAULT=fault), cwd=cwd)
    assert proc.returncode == -9, (fault, proc.stdout, proc.stderr)
    return Experiment.load("latest", home=env["NEMORUN_HOME"])


def _resumed(exp: Experiment, env: dict[str, str], cwd: str | None = None) -> Experiment:
    proc = run_cli(["exp", "rerun", exp.id, "--resume"], env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stdout, proc.stdout
    again = run_cli(["exp", "rerun", exp.id, "--resume"], env=env, cwd=cwd)  # a second resume sends nothing
    assert again.returncode == 0 and "resuming, 0 of" in again.stdout, (again.stdout, again.stderr)
    return Experiment(exp.path)


@pytest.mark.slurm
@pytest.mark.parametrize("fault", ["rendered", "before-submit:0", "after-submit:0", "before-submit:1", "after-submit:1",
                                   "before-submit:2", "after-submit:2"])
def test_slurm_chain_with_native_dependencies_killed_then_resumed(slurm_cluster: SlurmCluster, cli_env: dict[str, str],
                                                                  tmp_path: Path, fault: str) -> None:
    """a -> b -> c chained by Slurm's own ``--dependency=afterok``, killed at each step of the
    submission: after ``--resume`` each task is on the cluster exactly once, each dependency
    names the upstream job id the record holds, and the tasks ran once each, in order."""
    from tests.test_crash_find import _slurm_jobs
    from tests.test_slurm_groups import _conf

    marker = slurm_cluster.jobs_dir / f"chain-{tmp_path.name}.log"
    tasks = "".join(f"{t}: {{overrides: [executor=slurm, task=hello, task.name={t}, \"task.inline='echo {t} >> {marker}'\"]"
                    f"{f', depends_on: [{up}]' if up else ''}}}\n" for t, up in (("a", ""), ("b", "a"), ("c", "b")))
    args = _conf(tmp_path, tasks, name="chain")
    exp = _resumed(_killed(args, cli_env, fault), {**cli_env, "NEMORUN_CONFIG_PATH": str(tmp_path / "conf")})
    ids = {}
    for t in ("a", "b", "c"):
        [(job_id, _)] = _slurm_jobs(exp.record.job_dir(t) / "sbatch.sh")  # once, never twice
        assert exp.record.job(t).handle["id"] == job_id
        ids[t] = job_id
    for t, up in (("b", "a"), ("c", "b")):
        assert f"#SBATCH --dependency=afterok:{ids[up]}\n" in (exp.record.job_dir(t) / "sbatch.sh").read_text()
    assert {s.state.value for s in exp.wait(poll=0.5).values()} == {"SUCCEEDED"}
    assert marker.read_text() == "a\nb\nc\n"


@pytest.mark.slurm
@pytest.mark.parametrize("fault", ["rendered", "before-submit:0"])
def test_slurm_packed_sweep_killed_then_resumed(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path,
                                               fault: str) -> None:
    """A sweep packed into ONE Slurm job (``allocation=NAME``) killed before its sbatch (the
    after-submit kill is tests/test_slurm_groups_sweep.py's): --resume sends it once, every sweep
    job gets its step handle, and each step ran once."""
    from tests.test_crash_find import _slurm_jobs

    marker = slurm_cluster.jobs_dir / f"packed-{tmp_path.name}.log"
    args = ["-m", "executor=slurm", "task=hello", "task.env.S=1,2,3", f"task.inline='echo step $S >> {marker}'",
            "allocation=packed"]
    exp = _resumed(_killed(args, cli_env, fault), cli_env)
    [(job_id, _)] = _slurm_jobs(exp.record.job_dir("packed") / "sbatch.sh")
    assert exp.record.job("packed").handle["id"] == job_id
    assert [exp.record.job(f"hello-{i}").handle["id"] for i in range(3)] == [f"{job_id}:hello-{i}" for i in range(3)]
    assert {s.state.value for s in exp.wait(poll=0.5).values()} == {"SUCCEEDED"}
    assert sorted(marker.read_text().splitlines()) == ["step 1", "step 2", "step 3"]


PYTHON_CHAIN = textwrap.dedent("""\
    import sys
    import nemorun as run

    marker = sys.argv[1]
    with run.Experiment("pychain") as exp:
        a = exp.add(run.Script(inline=f"echo a >> {marker}"), name="a")
        b = exp.add(run.Script(inline=f"echo b >> {marker}"), name="b", depends_on=[a])
        exp.add(run.Script(inline=f"echo c >> {marker}"), name="c", depends_on=[b])
        exp.run()
    """)


@pytest.mark.parametrize("fault", ["rendered", "before-submit:0", "after-submit:0", "before-submit:1", "after-submit:1",
                                   "after-submit:2"])
def test_python_api_launch_killed_then_resumed(fault: str, cli_env: dict[str, str], tmp_path: Path,
                                               nemorun_home: Path) -> None:
    """``nemorun.Experiment(...).run()`` of a local chain (nemorun itself waits for each upstream
    job) killed at each step: ``exp.rerun(resume=True)`` from Python completes it, each job ran
    once and in order."""
    import subprocess
    import sys

    script, marker = tmp_path / "launch.py", tmp_path / "ran.log"
    script.write_text(PYTHON_CHAIN)
    proc = subprocess.run([sys.executable, str(script), str(marker)], env=dict(cli_env, NEMORUN_FAULT=fault),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    exp = Experiment.load("latest", home=nemorun_home)
    resumed = exp.rerun(resume=True, out=io.StringIO())
    assert resumed is not None and all(j.phase == "submitted" for j in resumed.jobs)
    assert {s.state.value for s in resumed.wait(poll=0.2).values()} == {"SUCCEEDED"}
    assert marker.read_text() == "a\nb\nc\n"


# -- names whose record folders collide; config files that are not YAML or not UTF-8 ------------------


def test_python_api_job_names_differing_only_by_case_are_refused(nemorun_home: Path) -> None:
    """``add(..., name="Train")`` and ``add(..., name="train")`` were two jobs whose record folders
    (jobs/Train, jobs/train) are ONE folder on a case-insensitive file system (macOS's default):
    the second record overwrote the first."""
    exp = nemorun.Experiment("cases")
    exp.add(nemorun.Script(inline="true"), name="Train")
    exp.add(nemorun.Script(inline="true"), name="train")
    with pytest.raises(ConfigError, match="^job names 'Train' and 'train' differ only by case"):
        exp.run(out=io.StringIO())
    assert not (nemorun_home / "experiments").exists()


def test_experiment_file_tasks_and_allocations_differing_only_by_case_are_refused(cli_env: dict[str, str],
                                                                                  tmp_path: Path) -> None:
    from tests.test_slurm_groups import _conf

    for tasks, names in (("A: {overrides: [task=hello]}\na: {overrides: [task=hello]}\n", ("A", "a")),
                         ("x: {allocation: Packed, overrides: [executor=slurm, task=hello, task.name=x]}\n"
                          "y: {allocation: Packed, overrides: [executor=slurm, task=hello, task.name=y]}\n"
                          "packed: {overrides: [executor=slurm, task=hello, task.name=packed]}\n", ("Packed", "packed"))):
        line = one_line_error(run_cli([*_conf(tmp_path, tasks, name="cases"), "dryrun=true"], env=cli_env))
        assert line.startswith(f"nemorun: error: job names '{names[0]}' and '{names[1]}' differ only by case"), line


@pytest.mark.parametrize("text, why", [(b"x: [\n", "a config file is not valid YAML: while parsing a flow node"),
                                       (b"a: 1\na: 2\n", "a config file is not valid YAML: while constructing a mapping"),
                                       (b"name: x\n\tinline: y\n", "a config file is not valid YAML: while scanning"),
                                       (b"\xff\xfe: x\n", "config file {path} is not UTF-8 text: invalid start byte at byte 0")])
@pytest.mark.parametrize("how", ["--config-dir", "NEMORUN_CONFIG_PATH", "sweep"])
def test_a_broken_option_file_is_one_line(text: bytes, why: str, how: str, cli_env: dict[str, str], tmp_path: Path) -> None:
    """A --config-dir option file that is not YAML (or not UTF-8) was ``internal error:
    ParserError`` / ``UnicodeDecodeError`` (exit 1) with no file named for the UTF-8 case."""
    conf = tmp_path / "conf"
    (conf / "task").mkdir(parents=True)
    (conf / "task" / "broken.yaml").write_bytes(text)
    path = (conf / "task" / "broken.yaml").resolve()
    args = {"--config-dir": ["--config-dir", str(conf), "task=broken"], "NEMORUN_CONFIG_PATH": ["task=broken"],
            "sweep": ["-m", "task=broken,hello"]}[how]
    env = dict(cli_env, NEMORUN_CONFIG_PATH=str(conf)) if how != "--config-dir" else cli_env
    line = one_line_error(run_cli([*args, "dryrun=true"], env=env))
    assert line.startswith("nemorun: error: " + why.format(path=path)), line
    assert str(path) in line


# -- Python API: wrong types in a Script ------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(path=5), "Script path must be a string, not int"),
    (dict(inline=["echo", "a"]), "Script inline must be a string, not list"),
    (dict(inline=5), "Script inline must be a string, not int"),
    (dict(inline="true", name=5), "Script name must be a string, not int"),
    (dict(inline="true", env=["A=1"]), "Script env must be a mapping of names to strings, not list"),
    (dict(path="run.sh", args=[b"x"]), "Script args must be strings or numbers, not bytes (b'x')"),
    (dict(path="run.sh", args=["--a", None]), "Script args must be strings or numbers, not NoneType (None)"),
    (dict(path="run.sh", args=[["nested"]]), "Script args must be strings or numbers, not list (['nested'])"),
])
def test_script_fields_of_the_wrong_type_are_one_line(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    """``Script(path=5)`` was a TypeError traceback and ``env=[...]`` a ValueError; ``inline=5``,
    ``inline=[...]`` or ``args=[b"x"]`` were accepted and ran the text of their Python repr."""
    with pytest.raises(ConfigError) as err:
        nemorun.Script(**kwargs)
    assert str(err.value) == message


def test_script_takes_a_pathlib_path(tmp_path: Path, nemorun_home: Path) -> None:
    """``Script(path=Path("x.sh"))`` — the natural spelling in a launch script — was refused as
    "PosixPath value cannot be part of a config"; it is the path's text, as a str path would be."""
    out = tmp_path / "out"
    exp = nemorun.Experiment("pathlike")
    exp.add(nemorun.Script(path=Path("run me.sh"), args=[Path("a b"), 3]))
    exp.dryrun(render_dir=out, out=io.StringIO())
    assert "bash 'run me.sh' 'a b' 3" in (out / "launch.sh").read_text()


def test_render_dir_on_a_read_only_file_system_is_one_line(small_tmpfs: Path, cli_env: dict[str, str],
                                                           nemorun_home: Path) -> None:
    """A folder nemorun may not write (root ignores permission bits, so: a read-only mount)."""
    import subprocess

    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    line = one_line_error(run_cli(["task=hello", f"render_dir={small_tmpfs}/out", "dryrun=true"], env=cli_env))
    assert line == f"nemorun: error: render_dir='{small_tmpfs}/out' cannot be written: Read-only file system"


# -- exp cancel while the launch is still sending --------------------------------------------------------


def _slow_sbatch(tmp_path: Path, slow: str) -> tuple[Path, Path]:
    """An ``sbatch`` on PATH that takes 3 s for a submission (or for anything else: the release
    probe), touching a file when it starts."""
    import shutil

    started, bin_dir = tmp_path / "sbatch-started", tmp_path / "bin"
    bin_dir.mkdir()
    test = '[ "$1" = --parsable ]' if slow == "submission" else '[ "$1" != --parsable ]'
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\nif {test}; then touch {started}; sleep 3; fi\n"
                                    f"exec {shutil.which('sbatch')} \"$@\"\n")
    (bin_dir / "sbatch").chmod(0o755)
    return started, bin_dir


def _cancel_while_sending(args: list[str], cancel_args: list[str], cli_env: dict[str, str], tmp_path: Path,
                          slow: str) -> tuple[Experiment, str, str]:
    import subprocess
    import sys
    import time

    started, bin_dir = _slow_sbatch(tmp_path, slow)
    launch = subprocess.Popen([sys.executable, "-m", "nemorun", *args], env=dict(cli_env, PATH=f"{bin_dir}:{cli_env['PATH']}"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # a bound on a poll loop, not a timing assertion
    while not started.exists():
        assert launch.poll() is None and time.monotonic() < deadline, launch.communicate()
        time.sleep(0.05)
    cancel = run_cli(["exp", "cancel", "latest", *cancel_args], env=cli_env)
    assert cancel.returncode == 0, cancel.stderr
    out, err = launch.communicate(timeout=120)
    assert launch.returncode == 0, (out, err)
    return Experiment.load("latest", home=cli_env["NEMORUN_HOME"]), out, err


@pytest.mark.slurm
def test_exp_cancel_of_one_array_task_while_the_array_is_sent(slurm_cluster: SlurmCluster, cli_env: dict[str, str],
                                                              tmp_path: Path) -> None:
    """``exp cancel ID train-1`` while the array's sbatch runs: the task was marked, then the
    launch recorded every task submitted and train-1 ran. Now it is cancelled on Slurm; the
    other tasks run."""
    args = ["-m", "executor=slurm", "task=train", "task.params.steps=2", "task.params.lr=0.1,0.2,0.3"]
    exp, out, err = _cancel_while_sending(args, ["train-1"], cli_env, tmp_path, "submission")
    states = {n: s.state.value for n, s in exp.wait(poll=0.5).items()}
    assert states == {"train-0": "SUCCEEDED", "train-1": "CANCELLED", "train-2": "SUCCEEDED"}, (states, out, err)


@pytest.mark.slurm
@pytest.mark.parametrize("slow", ["submission", "probe"])
@pytest.mark.parametrize("values", ["0.1,0.2,0.3", "0.1"], ids=["array", "single"])
def test_exp_cancel_while_the_launch_is_sending_is_not_lost(slurm_cluster: SlurmCluster, cli_env: dict[str, str],
                                                            tmp_path: Path, values: str, slow: str) -> None:
    """``exp cancel`` landing while the launch's ``sbatch --parsable`` runs, or while it probes the
    cluster's release (``sbatch --version``), each slowed to seconds as over a slow SSH link:
    cancel marked the job "cancelled before submission", then the launch wrote its own copy of
    the record over that mark and sent the job, which ran: the user's cancel was lost. Now a job
    cancelled before its sbatch is not sent, and one cancelled during it is cancelled on Slurm."""
    import subprocess

    from tests.test_crash_find import _slurm_jobs

    args = [*(["-m"] if "," in values else []), "executor=slurm", "executor.slurm_version=22.05", "task=train",
            "task.params.steps=200", "task.params.sleep=0.1", f"task.params.lr={values}"]
    exp, out, err = _cancel_while_sending(args, [], cli_env, tmp_path, slow)
    sent = list(exp.meta.get("arrays") or {}) or [j.name for j in exp.jobs]
    on_slurm = _slurm_jobs(exp.record.job_dir(sent[0]) / "sbatch.sh")
    assert bool(on_slurm) is (slow == "submission"), (on_slurm, out)
    assert {s.state.value for s in exp.wait(poll=0.5).values()} == {"CANCELLED"}, (out, err)
    for job_id, _ in on_slurm:
        state = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
        assert state.stdout.split() == ["CANCELLED"], (job_id, state.stdout)


@pytest.mark.parametrize("make, field", [
    (lambda v: nemorun.SlurmExecutor(nodes=v), "executor.nodes"),
    (lambda v: nemorun.SlurmExecutor(env_vars=v), "executor.env_vars"),
    (lambda v: nemorun.LocalExecutor(retries=v), "executor.retries"),
    (lambda v: nemorun.DockerExecutor(container_image="img", volumes=v), "executor.volumes"),
    (lambda v: nemorun.KubeflowExecutor(image="img", tolerations=v), "executor.tolerations"),
    (lambda v: nemorun.SkypilotExecutor(use_spot=v), "executor.use_spot"),
])
def test_an_interpolation_string_for_a_field_that_is_not_text_fails_at_build(make, field: str) -> None:  # type: ignore[no-untyped-def]
    """``SlurmExecutor(nodes="${oc.env:N}")`` was built (OmegaConf takes an interpolation for any
    field and checks it only when resolved) and failed at launch in a multi-line error;
    ``env_vars="${x}"`` or ``volumes="${x}"`` were an AttributeError/ValueError traceback, or a
    volume per character. A string is data here, and these fields do not take text."""
    with pytest.raises(ConfigError) as err:
        make("${oc.env:HOME}")
    assert str(err.value) == f"{field}='${{oc.env:HOME}}': a string is data here, not a reference, and {field.split('.')[1]} does not take text"


def test_text_fields_still_take_an_interpolation_string_as_data(tmp_path: Path, nemorun_home: Path) -> None:
    out = tmp_path / "out"
    exp = nemorun.Experiment("data", executor=nemorun.SlurmExecutor(account="${oc.env:HOME}", env_vars={"A": "${x}"}))
    exp.add(nemorun.Script(inline="true"))
    exp.dryrun(render_dir=out, out=io.StringIO())
    script = (out / "sbatch.sh").read_text()
    assert "#SBATCH --account=${oc.env:HOME}\n" in script and "export A='${x}'\n" in script


# -- two senders of one experiment ------------------------------------------------------------------------


def test_concurrent_resumes_send_each_job_once(cli_env: dict[str, str], nemorun_home: Path) -> None:
    """Three ``exp rerun ID --resume`` at once after a kill at ``rendered``: each found the same
    jobs unsent and sent them (80 jobs, 42 of them ran two or three times). Now one sends, the
    others refuse in one line, and every job ran once."""
    import subprocess
    import sys

    args = ["-m", "task=hello", "task.inline='echo run-$RANDOM'", "executor.env_vars.X=range(0,40)"]
    exp = _killed(args, cli_env, "rendered")
    cmd = [sys.executable, "-m", "nemorun", "exp", "rerun", exp.id, "--resume"]
    procs = [subprocess.Popen(cmd, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    refused = [err for code, _, err in results if code != 0]
    assert all(code == 1 and err.count("\n") == 1 and "is being sent by another nemorun" in err
               for code, _, err in results if code != 0), results
    assert len(refused) < 3
    ok(run_cli(["exp", "rerun", exp.id, "--resume"], env=cli_env))  # whatever a refused one left
    exp = Experiment(exp.path)
    assert {s.state.value for s in exp.wait(poll=0.2).values()} == {"SUCCEEDED"}
    runs = [(exp.record.job_dir(j.name) / "stdout.log").read_text().count("run-") for j in exp.jobs]
    assert runs == [1] * 40


def test_resume_while_the_launch_still_sends_is_refused(cli_env: dict[str, str], tmp_path: Path,
                                                        nemorun_home: Path) -> None:
    """A local chain's launch stays attached until b is sent (nemorun waits for a); a --resume
    meanwhile sent b too, and b ran twice."""
    import subprocess
    import sys
    import time

    marker = tmp_path / "ran.log"
    script = tmp_path / "launch.py"
    script.write_text(PYTHON_CHAIN.replace('inline=f"echo a >> {marker}"', 'inline=f"sleep 3; echo a >> {marker}"'))
    launch = subprocess.Popen([sys.executable, str(script), str(marker)], env=cli_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # a bound on a poll loop, not a timing assertion
    while not list(nemorun_home.glob("experiments/pychain/*/jobs/a/record.json")) or \
            Experiment.load("latest", home=nemorun_home).record.job("a").phase != "submitted":
        assert launch.poll() is None and time.monotonic() < deadline, launch.communicate()
        time.sleep(0.05)
    resumed = run_cli(["exp", "rerun", "latest", "--resume"], env=cli_env)
    assert resumed.returncode == 1 and "is being sent by another nemorun" in resumed.stderr, resumed.stderr
    assert launch.wait(timeout=120) == 0, launch.communicate()
    exp = Experiment.load("latest", home=nemorun_home)
    assert {s.state.value for s in exp.wait(poll=0.2).values()} == {"SUCCEEDED"}
    assert marker.read_text() == "a\nb\nc\n"
    ok(run_cli(["exp", "rerun", "latest", "--resume"], env=cli_env))  # the launch has ended: a resume may run


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
                      st.sampled_from(["true", "True", "FALSE", "null", "Null", "nan", "NaN", "inf", "INF", "choice", "range",
                                       "glob", "int", "str", "e", "_", "x1e3", "inf_", "nan1"])))
def test_words_written_bare_read_back_as_the_same_string(text: str) -> None:
    """The parser-free path of python_api._reads_back_bare (a plain word is written without quotes
    unless Hydra would read it as a bool, null or float) agrees with Hydra's own parser."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    [parsed] = OverridesParser.create().parse_overrides([f"k={python_api.hydra_value(text)}"])
    assert (type(parsed.value()), parsed.value()) == (str, text)
    assert python_api._reads_back_bare.__wrapped__(text) == (text.lower() not in {"true", "false", "null", "nan", "inf"})


def test_render_dir_inside_nemorun_home_is_refused(cli_env: dict[str, str], tmp_path: Path, nemorun_home: Path) -> None:
    """``render_dir=<a record's jobs/<job>/>`` (or a symlink to it): a dry run overwrote the
    launch.sh the record keeps as submitted, so the record no longer said what ran."""
    ok(run_cli(["task=hello", "task.inline='echo original'", "wait=true"], env=cli_env))
    job_dir = Experiment.load("latest", home=nemorun_home).record.job_dir("hello")
    kept = (job_dir / "launch.sh").read_bytes()
    (tmp_path / "link").symlink_to(job_dir)
    for where in (job_dir, tmp_path / "link", nemorun_home):
        line = one_line_error(run_cli(["task=hello", "task.inline='echo other'", "dryrun=true", f"render_dir={where}"],
                                       env=cli_env))
        assert line.startswith(f"nemorun: error: render_dir='{where}' is inside NEMORUN_HOME"), line
    assert (job_dir / "launch.sh").read_bytes() == kept


@pytest.mark.parametrize("args, where", [
    (["task=hello", "executor.env_vars=${oc.env:HOME}"], "executor.env_vars: an interpolation gave a str where a mapping goes"),
    (["executor=slurm", "task=hello", "executor.srun_args=${task.name}"], "executor.srun_args: an interpolation gave a str where a list goes"),
    (["executor=kubeflow", "executor.image=i", "task=hello", "executor.tolerations=${task.name}"],
     "executor.tolerations: an interpolation gave a str where a list goes"),
    (["task=hello", "launcher=torchrun", "launcher.extra_args=${task.name}"], "launcher.extra_args: an interpolation gave a str where a list goes"),
    (["task=script", "task.script=x.sh", "task.args=${task.name}"], "task.args: an interpolation gave a str where a list goes"),
])
def test_an_interpolation_giving_text_where_a_mapping_or_list_goes_is_one_line(args: list[str], where: str,
                                                                               cli_env: dict[str, str]) -> None:
    """OmegaConf checks an interpolation's result against scalar fields only: ``executor.env_vars=
    ${oc.env:HOME}`` was ``internal error: AttributeError: 'str' object has no attribute 'items'``."""
    line = one_line_error(run_cli([*args, "dryrun=true"], env=cli_env))
    assert line == f"nemorun: error: {where}"


def test_an_interpolation_giving_a_mapping_still_works(cli_env: dict[str, str]) -> None:
    out = ok(run_cli(["task=hello", "executor.env_vars=${task.env}", "task.env.A=1", "dryrun=true"], env=cli_env)).stdout
    assert "export A=1" in out


def _hydra_quoted(value: str) -> str:
    """``value`` as a single-quoted Hydra string (a quote escaped, and the backslashes before a
    quote or the end doubled)."""
    import re

    return "'" + re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), value) + "'"


@pytest.mark.slurm
def test_packed_sweep_steps_get_nasty_env_values_exactly(slurm_cluster: SlurmCluster, cli_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    """A sweep packed into ONE Slurm job (``allocation=NAME``, a step per job) over an env value:
    each step's ``export`` must give its task the value exactly as typed on the command line."""
    values = [v for v in NASTY if len(v) < 1000 and "\r\n" not in v] + ["lone\rcr", "y" * 20_000]
    show = slurm_cluster.jobs_dir / f"show-env-{tmp_path.name}.py"
    show.write_text("import json, os\nprint('ROW ' + json.dumps(os.environ['V']))\n")
    args = ["-m", "executor=slurm", "task=script", f"task.script={show}", "task.name=env",
            "task.env.V=" + ",".join(_hydra_quoted(v) for v in values), "allocation=packed"]
    ok(run_cli(args, env=cli_env))
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert {s.state.value for s in exp.wait(poll=0.5).values()} == {"SUCCEEDED"}
    assert [_rows("".join(exp.logs(f"env-{i:02d}"))) for i in range(len(values))] == [[v] for v in values]


@pytest.mark.parametrize("packed", [[], ["-m", "allocation=packed"]])
def test_a_crlf_in_a_slurm_script_value_is_refused_before_recording(packed: list[str], cli_env: dict[str, str],
                                                                     nemorun_home: Path) -> None:
    """sbatch refuses a batch script with a CR LF anywhere ("DOS line breaks"): an env value
    holding one was recorded, then failed at submission (exit 1, a failed experiment left behind)."""
    values = "'a\r\nb'" + (",x" if packed else "")
    line = one_line_error(run_cli([*packed, "executor=slurm", "task=hello", f"task.env.V={values}"], env=cli_env))
    assert "a value holds a CR LF line break (\\r\\n), which sbatch refuses" in line, line
    assert not (nemorun_home / "experiments").exists()


def test_resume_on_a_read_only_home_is_one_line(small_tmpfs: Path) -> None:
    """The sending lock of a --resume on a read-only NEMORUN_HOME: a one-line store error, no traceback."""
    import subprocess

    env = {**os.environ, "NEMORUN_HOME": str(small_tmpfs)}
    exp = _killed(["-m", "task=hello", "task.env.X=1,2"], env, "rendered")
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    proc = run_cli(["exp", "rerun", exp.id, "--resume"], env=env)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("nemorun: error: cannot write ") and "sending.lock: Read-only file system" in proc.stderr
