"""Session 5, wave 2 (LEFT2): each item with the defect it fixes.

Real parts only: the real CLI in a subprocess, real local jobs, real processes racing on one
record. Kubeflow and SkyPilot use the local contract servers already in tests/ (kube_fake's
apiserver, the SkyPilot API server fixture); Docker the real engine fixture.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nemorun.errors import ConfigError
from nemorun.store import CONFIG_DIR_MAX_FILES, ExperimentRecord, JobRecord
from tests.helpers import one_line_error, ok, run_cli
from tests.test_local import only_experiment

TASK_OPTION = "defaults:\n  - /_schema_task@_here_\n  - _self_\nname: {name}\ninline: echo ran-{name}\n"


def _new_record(home: Path, jobs: list[str], config_dirs: tuple[str, ...] = ()) -> ExperimentRecord:
    return ExperimentRecord.create(home=home, name="race", experiment_id="e1", target="local", config_yaml="{}\n",
                                   overrides=[], submit_dir=str(home), job_names=jobs, config_dirs=config_dirs)


# -- 1. a launch copies only the option files of its config folders, and refuses a huge folder ------

def test_config_folder_copy_holds_only_yaml_files_and_their_folders(tmp_path: Path, cli_env: dict[str, str],
                                                                    nemorun_home: Path) -> None:  # fmt: skip
    conf = tmp_path / "conf"
    (conf / "task").mkdir(parents=True)
    (conf / "task" / "mine.yaml").write_text(TASK_OPTION.format(name="mine"))
    (conf / "task" / "notes.txt").write_text("not an option\n")
    (conf / "task" / ".hidden.yaml").write_text("a: 1\n")
    for i in range(50):  # a tree of empty folders and folders without options (was copied whole)
        (conf / "data" / f"d{i}" / "sub").mkdir(parents=True)
        (conf / "data" / f"d{i}" / "sub" / "blob.bin").write_bytes(b"x" * 1000)
    (conf / ".git" / "refs").mkdir(parents=True)
    (conf / ".git" / "refs" / "x.yaml").write_text("a: 1\n")
    (conf / "deep" / "er" / "est").mkdir(parents=True)
    (conf / "deep" / "er" / "est" / "o.yaml").write_text("b: 2\n")
    (conf / "loop").symlink_to(conf)  # a link back to the folder is not walked around
    ok(run_cli(["--config-dir", str(conf), "task=mine"], env=cli_env))
    kept = only_experiment(nemorun_home).path / "config_dirs" / "0"
    copied = sorted(str(p.relative_to(kept)) for p in kept.rglob("*"))
    assert copied == ["deep", "deep/er", "deep/er/est", "deep/er/est/o.yaml", "loop", "loop/deep", "loop/deep/er",
                      "loop/deep/er/est", "loop/deep/er/est/o.yaml", "loop/task", "loop/task/mine.yaml",
                      "task", "task/mine.yaml"] or copied == ["deep", "deep/er", "deep/er/est", "deep/er/est/o.yaml",
                                                              "task", "task/mine.yaml"], copied


def test_a_config_folder_with_too_many_yaml_files_is_refused_in_one_line(tmp_path: Path, cli_env: dict[str, str],
                                                                         nemorun_home: Path) -> None:  # fmt: skip
    conf = tmp_path / "everything"
    (conf / "task").mkdir(parents=True)
    (conf / "task" / "mine.yaml").write_text(TASK_OPTION.format(name="mine"))
    (conf / "junk").mkdir()
    for i in range(CONFIG_DIR_MAX_FILES + 1):
        (conf / "junk" / f"f{i}.yaml").write_text("a: 1\n")
    line = one_line_error(run_cli(["--config-dir", str(conf), "task=mine"], env=cli_env))
    assert str(conf) in line and f"more than {CONFIG_DIR_MAX_FILES} .yaml files" in line and "--config-dir" in line
    assert not list(nemorun_home.glob("experiments/*/*")), "a refused launch leaves no record"


def test_a_config_folder_with_too_many_megabytes_of_yaml_is_refused(tmp_path: Path, nemorun_home: Path) -> None:
    conf = tmp_path / "big"
    conf.mkdir()
    (conf / "huge.yaml").write_text("a: '" + "x" * (21 * 1024 * 1024) + "'\n")
    with pytest.raises(ConfigError, match=r"big holds more than .* 20 MB .*21\.0 MB"):
        _new_record(nemorun_home, ["j"], (str(conf),))
    assert not (nemorun_home / "experiments" / "race").exists()


# -- 2. save_job: a compare-and-swap on rev, so a cancel and a launch never lose each other's write --

RACER = textwrap.dedent('''
    import random, sys, time
    from pathlib import Path
    from nemorun.states import AppState
    from nemorun.store import ExperimentRecord
    role, path, rounds, out = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    pace_with = [r for r in (sys.argv[5] if len(sys.argv) > 5 else "").split(",") if r and r != role]
    record, acted = ExperimentRecord(path), []

    def at(other):
        try:
            return int((path / f"at-{other}").read_text() or -1)
        except (FileNotFoundError, ValueError):
            return -1

    (path / f"ready-{role}").write_text("")  # imported: the race starts when every racer is
    while not (path / "go").exists():
        time.sleep(0.001)
    for k in range(rounds):
        if pace_with:  # rounds up to k - 1 done
            (path / f"at-{role}").write_text(str(k - 1))
        while any(at(other) < k - 1 for other in pace_with):  # never a round ahead: the two interleave
            time.sleep(0.0005)
        name = f"j{k}"
        rec = record.job(name)
        time.sleep(random.random() / 1000)  # the window between reading and writing
        if role == "submit":  # what the launch writes after sbatch answered (execute._send)
            cancelled = record.job(name).state == AppState.CANCELLED.value
            time.sleep(random.random() / 1000)
            rec.phase, rec.handle, rec.state = "submitted", {"backend": "local", "id": name}, AppState.SUBMITTED.value
            raced = record.save_job(rec)
            if cancelled or (raced is not None and raced.state == AppState.CANCELLED.value):
                acted.append(name)  # the launch cancels it on the backend
        elif role == "cancel":  # what `exp cancel` does (api.Experiment.cancel)
            if rec.handle is not None:
                acted.append(name)  # sent: cancelled on the backend
                continue
            rec.state, rec.detail = AppState.CANCELLED.value, "cancelled before submission"
            record.save_job(rec)
            if rec.handle is not None:
                acted.append(name)  # the launch's write came first: cancelled on the backend
        else:  # both roles append to one list: a generic lost-update check
            record.save_job(rec, reapply=lambda mine, theirs: JobRecord(**{**theirs.fields(), "overrides": [*theirs.overrides, mine.overrides[-1]]}))
    (path / f"at-{role}").write_text(str(rounds))
    Path(out).write_text("\\n".join(acted))
''')


def _start(path: Path, roles: list[str]) -> None:
    """Go once every racer has started (a loaded machine took longer to start one racer than the
    other took to run all its rounds: the race went one way only)."""
    deadline = time.monotonic() + 120
    while not all((path / f"ready-{role}").exists() for role in roles):
        assert time.monotonic() < deadline, "a racer never started"
        time.sleep(0.005)
    (path / "go").write_text("")


def _race(tmp_path: Path, record: ExperimentRecord, roles: list[str], rounds: int) -> list[list[str]]:
    script = tmp_path / "racer.py"
    script.write_text(RACER.replace("from nemorun.store import ExperimentRecord",
                                    "from nemorun.store import ExperimentRecord, JobRecord"))
    outs = [tmp_path / f"out{i}" for i in range(len(roles))]
    procs = [subprocess.Popen([sys.executable, str(script), role, str(record.path), str(rounds), str(out), ",".join(roles)])
             for role, out in zip(roles, outs)]
    _start(record.path, roles)
    assert [p.wait(timeout=300) for p in procs] == [0] * len(procs)
    return [o.read_text().split() for o in outs]


def test_a_cancel_and_a_submission_racing_on_a_record_never_lose_either(tmp_path: Path, nemorun_home: Path) -> None:
    rounds = 150
    record = _new_record(nemorun_home, [f"j{k}" for k in range(rounds)])
    record.save_jobs((JobRecord(name=f"j{k}", target="local") for k in range(rounds)), compact=False)
    by_launch, by_cancel = _race(tmp_path, record, ["submit", "cancel"], rounds)
    for k in range(rounds):
        rec = record.job(f"j{k}")
        assert rec.handle == {"backend": "local", "id": f"j{k}"} and rec.phase == "submitted", rec  # never lost
        # the cancel is never lost: exactly one side cancels the sent job on the backend
        assert (f"j{k}" in by_launch) != (f"j{k}" in by_cancel), (k, rec)
    assert by_launch and by_cancel, "the race never went both ways: the test did not exercise the swap"


def test_two_writers_appending_to_one_record_lose_no_update(tmp_path: Path, nemorun_home: Path) -> None:
    rounds = 100
    record = _new_record(nemorun_home, [f"j{k}" for k in range(rounds)])
    record.save_jobs((JobRecord(name="j0", target="local") for _ in range(1)), compact=False)
    # every round of both writers hits the same record j0 (the racer reads j{k}: point them all at j0)
    for k in range(1, rounds):
        (record.job_dir(f"j{k}")).parent.mkdir(parents=True, exist_ok=True)
    script_rounds = rounds
    racer = RACER.replace('name = f"j{k}"', 'name = "j0"').replace(
        "rec = record.job(name)", "rec = record.job(name); rec.overrides = [*rec.overrides, f'{role}{k}']")
    (tmp_path / "r").mkdir()
    script = tmp_path / "r" / "racer.py"
    script.write_text(racer.replace("from nemorun.store import ExperimentRecord", "from nemorun.store import ExperimentRecord, JobRecord"))
    procs = [subprocess.Popen([sys.executable, str(script), role, str(record.path), str(script_rounds), str(tmp_path / role), "a,b"])
             for role in ("a", "b")]
    _start(record.path, ["a", "b"])
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    got = record.job("j0").overrides
    assert sorted(got) == sorted([f"a{k}" for k in range(rounds)] + [f"b{k}" for k in range(rounds)]), len(got)


# -- 4. `exp status` of a local job loads no composer, renderer or config library ---------------

STATUS_MODULES = textwrap.dedent('''
    import json, sys
    from nemorun.quick import main
    sys.argv = ["nemorun", "exp", "status", sys.argv[1]]
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("omegaconf", "jinja2", "hydra"))
    print(json.dumps({"code": code, "heavy": heavy, "local": "nemorun.submitters.local" in sys.modules}))
''')


def test_exp_status_of_a_running_local_job_imports_no_omegaconf_jinja_or_hydra(cli_env: dict[str, str],
                                                                                nemorun_home: Path) -> None:  # fmt: skip
    ok(run_cli(["executor=local", "task=hello", "task.inline='sleep 30'"], env=cli_env))
    rec = only_experiment(nemorun_home)
    try:
        proc = subprocess.run([sys.executable, "-c", STATUS_MODULES, rec.path.name], capture_output=True, text=True,
                              env=cli_env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
        assert seen["code"] in (0, None) and "RUNNING" in proc.stdout, proc.stdout
        assert seen["local"], "the status did not ask the local backend: the check proves nothing"
        assert seen["heavy"] == [], seen["heavy"]
    finally:
        ok(run_cli(["exp", "cancel", rec.path.name], env=cli_env))


# -- 5. Docker: one GET /version per engine and process, not one per poll ------------------------

@pytest.mark.docker
def test_docker_polls_ask_the_engine_its_version_once(cli_env: dict[str, str], nemorun_home: Path, docker_engine: object,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The real engine fixture; the count is of docker-py's own version request, called through."""
    docker = pytest.importorskip("docker")
    from nemorun.submitters import docker as submitter

    host = docker_engine.host  # type: ignore[attr-defined]
    env = {**cli_env, "DOCKER_HOST": host}
    ok(run_cli(["executor=docker", "task=hello", f"executor.container_image={docker_engine.image}",  # type: ignore[attr-defined]
                "executor.shell=sh", "executor.network=none", "task.inline='sleep 30'"], env=env))
    handle = only_experiment(nemorun_home).job("hello").handle_obj()
    assert handle is not None
    asked: list[str] = []
    real = docker.api.client.APIClient._retrieve_server_version

    def counted(self: object) -> str:
        asked.append("GET /version")
        return real(self)

    monkeypatch.setattr(docker.api.client.APIClient, "_retrieve_server_version", counted)
    monkeypatch.setattr(submitter, "_api_versions", {})
    try:
        states = [submitter.status([handle])[handle.id].state.value for _ in range(5)]
        assert states == ["RUNNING"] * 5
        assert asked == ["GET /version"], asked
    finally:
        submitter.cancel(handle)
    assert len(asked) == 1  # the cancel, a sixth client, did not ask either


# -- 3. Kubeflow and SkyPilot refuse in resolve, before any task of the launch is sent -----------

TWO_TASKS = """defaults:
  - /_schema_experiment@_here_
  - _self_
name: two
tasks:
  first:
    overrides: [task=hello, task.name=first]
  second:
    overrides: [task=hello, task.name=second]
"""


@pytest.fixture
def two_tasks(tmp_path: Path) -> Path:
    conf = tmp_path / "exp-conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "two.yaml").write_text(TWO_TASKS)
    return conf


@pytest.fixture
def no_sdk(tmp_path: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes ``import kubernetes`` / ``import sky`` fail as
    in an environment without them (both are installed here)."""
    root = tmp_path / "no-sdk"
    for name in ("kubernetes", "sky"):
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text("raise ImportError('not installed here')\n")
    return root


def _refused_before_sending(proc: subprocess.CompletedProcess[str], code: int, home: Path, *parts: str) -> None:
    line = one_line_error(proc, code)
    assert line.startswith("nemorun: error: job first was not submitted: ") and "no job of this launch was sent" in line, line
    for part in parts:
        assert part in line, line
    rec = only_experiment(home)
    for job in ("first", "second"):
        r = rec.job(job)
        assert r.handle is None and r.attempted_at is None and r.phase != "submitted", r


KUBE = ["experiment=two", "executor=kubeflow", "executor.image=busybox:1"]


@pytest.mark.parametrize("kubeconfig, why", [
    ("not: [yaml", "while parsing a flow sequence"),
    ("apiVersion: v1\nkind: Config\ncurrent-context: gone\nclusters: []\ncontexts: []\nusers: []\n", "Expected object with name gone"),
])  # fmt: skip
def test_kubeflow_unusable_kubeconfig_is_refused_before_any_task_is_sent(kubeconfig: str, why: str, two_tasks: Path, tmp_path: Path,
                                                                         cli_env: dict[str, str], nemorun_home: Path) -> None:  # fmt: skip
    (tmp_path / "kc").write_text(kubeconfig)
    proc = run_cli(["--config-dir", str(two_tasks), *KUBE], env={**cli_env, "KUBECONFIG": str(tmp_path / "kc")})
    _refused_before_sending(proc, 2, nemorun_home, "no Kubernetes credentials", why, str(tmp_path / "kc"))


def test_kubeflow_without_the_kubernetes_client_sends_nothing(two_tasks: Path, no_sdk: Path, cli_env: dict[str, str],
                                                              nemorun_home: Path) -> None:  # fmt: skip
    proc = run_cli(["--config-dir", str(two_tasks), *KUBE], env={**cli_env, "PYTHONPATH": str(no_sdk)})
    _refused_before_sending(proc, 1, nemorun_home, "needs the kubernetes client")


def test_kubeflow_two_tasks_still_run_with_usable_credentials(two_tasks: Path, tmp_path: Path, cli_env: dict[str, str],
                                                              nemorun_home: Path) -> None:  # fmt: skip
    """Against the local Kubernetes contract server (tests/kube_fake.py)."""
    pytest.importorskip("kubernetes")
    from tests.kube_fake import FakeKube, serve

    fake = FakeKube()
    server, thread = serve(fake)
    try:
        env = {**cli_env, "KUBECONFIG": str(fake.kubeconfig(tmp_path / "kc"))}
        proc = ok(run_cli(["--config-dir", str(two_tasks), *KUBE], env=env))
        assert proc.stdout.count("submitted as default/") == 2 and len(fake.trainjobs) == 2, proc.stdout
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _sky_env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A client of an API server nobody listens on, that may not start one (HOME: ~/.sky in tmp)."""
    return {**cli_env, "HOME": str(tmp_path / "home"), "SKYPILOT_API_SERVER_ENDPOINT": "http://127.0.0.1:9",
            "SKYPILOT_DISABLE_LOCAL_API_SERVER": "1", "SKYPILOT_DISABLE_USAGE_COLLECTION": "1"}


def test_skypilot_unreachable_api_server_is_refused_before_any_task_is_sent(two_tasks: Path, tmp_path: Path, cli_env: dict[str, str],
                                                                            nemorun_home: Path) -> None:  # fmt: skip
    pytest.importorskip("sky")
    proc = run_cli(["--config-dir", str(two_tasks), "experiment=two", "executor=skypilot"], env=_sky_env(cli_env, tmp_path))
    _refused_before_sending(proc, 1, nemorun_home, "SkyPilot API server http://127.0.0.1:9", "ApiServerConnectionError")


def test_skypilot_without_the_sdk_sends_nothing(two_tasks: Path, no_sdk: Path, tmp_path: Path, cli_env: dict[str, str],
                                                nemorun_home: Path) -> None:  # fmt: skip
    proc = run_cli(["--config-dir", str(two_tasks), "experiment=two", "executor=skypilot"],
                   env={**_sky_env(cli_env, tmp_path), "PYTHONPATH": str(no_sdk)})
    _refused_before_sending(proc, 1, nemorun_home, "needs the SkyPilot SDK")


# -- 6. hydra.searchpath is refused (its folders would not be recorded): --config-dir is ---------

@pytest.mark.parametrize("args", [
    ["task=hello", "hydra.searchpath=[file:///tmp]", "dryrun=true"],
    ["-m", "task=hello", "+hydra.searchpath=[file:///tmp]", "executor.ntasks_per_node=1,2"],
    ["task=hello", "hydra.searchpath=[pkg://nemorun.conf]"],
])  # fmt: skip
def test_a_searchpath_override_is_refused_pointing_at_config_dir(args: list[str], cli_env: dict[str, str], nemorun_home: Path) -> None:
    line = one_line_error(run_cli(args, env=cli_env))
    assert "hydra.searchpath is not supported" in line and "--config-dir" in line, line
    assert not list(nemorun_home.glob("experiments/*/*")), "nothing is recorded"


def test_a_searchpath_override_is_refused_by_the_python_api_and_rerun(cli_env: dict[str, str], nemorun_home: Path) -> None:
    import io

    import nemorun

    with pytest.raises(ConfigError, match="hydra.searchpath is not supported"):
        nemorun.launch(["task=hello", "hydra.searchpath=[file:///tmp]"], dryrun=True, out=io.StringIO())
    ok(run_cli(["task=hello", "wait=true"], env=cli_env))
    rec = only_experiment(nemorun_home)
    line = one_line_error(run_cli(["exp", "rerun", rec.path.name, "hydra.searchpath=[file:///tmp]"], env=cli_env))
    assert "hydra.searchpath is not supported" in line
    assert len(list(nemorun_home.glob("experiments/*/*"))) == 1


# -- 7. advice that keeps a sweep a sweep; one rule for bools in a Script's text fields ------------

def test_the_quoted_form_advice_keeps_each_sweep_value_apart(cli_env: dict[str, str], nemorun_home: Path) -> None:
    base = ["-m", "executor=docker", "task=hello", "dryrun=true"]
    line = one_line_error(run_cli([*base, "executor.container_image=img#1,img#2"], env=cli_env))
    fixed = line.split("write it as ")[1]
    assert fixed == "'executor.container_image=\"img#1\",\"img#2\"'", fixed  # was ONE value "img#1,img#2": one job
    import shlex

    [arg] = shlex.split(fixed)
    proc = ok(run_cli([*base, arg], env=cli_env))
    assert "sweep of 2 jobs" in proc.stdout and 'container_image="img#2"' in proc.stdout, proc.stdout
    # without -m the same form is refused with the three choices, the one-value form unquoted inside
    line = one_line_error(run_cli(["executor=docker", "task=hello", "dryrun=true", arg], env=cli_env))
    assert "for one value with a comma write 'executor.container_image=\"img#1,img#2\"'" in line, line
    assert "to sweep over the values, add -m" in line


def test_a_script_bool_is_true_in_args_and_env_alike(nemorun_home: Path, tmp_path: Path) -> None:
    """The rule: a bool given to a text field is written as the config language and the command
    line write it (true/false), in args as in env (args=[True] gave 'True', env {"A": True} 'true')."""
    import io

    import nemorun
    from nemorun.python_api import Script

    script = tmp_path / "show.sh"
    script.write_text('echo "$*|$A|$B"\n')
    exp = nemorun.run(Script(path=str(script), args=[True, False, 1.5, "x"], env={"A": True, "B": False}),
                      detach=False, out=io.StringIO())
    assert exp is not None
    assert "".join(exp.logs()).strip() == "true false 1.5 x|true|false"
