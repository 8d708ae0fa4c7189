"""``nemorun exp list|show|status|logs|cancel|rerun`` on real local jobs, through the real CLI."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from nemorun.api import Experiment
from tests.helpers import run_cli


def _launch(env: dict[str, str], *overrides: str) -> Experiment:
    proc = run_cli(list(overrides), env=env)
    assert proc.returncode == 0, proc.stderr
    return Experiment.load("latest", home=env["NEMORUN_HOME"])


def test_list_show_status_logs_rerun(cli_env: dict[str, str]) -> None:
    first = _launch(cli_env, "task=train", "task.params.steps=2", "name=alpha")
    first.wait(poll=0.2)
    second = _launch(cli_env, "-m", "task=hello", "executor.ntasks_per_node=1,2", "name=beta")

    rows = json.loads(run_cli(["exp", "list", "--json"], env=cli_env).stdout)
    assert [r["name"] for r in rows] == ["beta", "alpha"]
    assert rows[1]["states"] == {"SUCCEEDED": 1} and rows[0]["jobs"] == 2
    plain = run_cli(["exp", "list", "--name", "alpha"], env=cli_env).stdout
    assert plain.splitlines()[0].split()[:3] == ["ID", "NAME", "EXECUTOR"] and "beta" not in plain

    shown = json.loads(run_cli(["exp", "show", first.id[:18], "--json"], env=cli_env).stdout)
    assert shown["id"] == first.id and shown["overrides"] == ["task=train", "task.params.steps=2", "name=alpha"]
    assert "steps: 2" in shown["config"] and shown["artifacts"]["train"][0].endswith("jobs/train/launch.sh")

    second.wait(poll=0.2)
    status = json.loads(run_cli(["exp", "status", "latest", "--json"], env=cli_env).stdout)
    assert status["id"] == second.id
    assert {j["state"] for j in status["jobs"].values()} == {"SUCCEEDED"}

    logs = run_cli(["exp", "logs", first.id], env=cli_env)
    assert "rank=0 done" in logs.stdout
    both = run_cli(["exp", "logs", second.id], env=cli_env).stdout
    assert "==> hello-0 <==" in both and both.count("hello from") == 2

    again = run_cli(["exp", "rerun", first.id, "task.params.steps=3", "--json"], env=cli_env)
    assert again.returncode == 0, again.stderr
    new = Experiment(Path(json.loads(again.stdout)["path"]))
    assert new.id != first.id and new.meta["overrides"][-1] == "task.params.steps=3"
    new.wait(poll=0.2)
    assert "step=3" in "".join(new.logs("train"))


def test_cancel_running_job(cli_env: dict[str, str]) -> None:
    exp = _launch(cli_env, "task=hello", "task.inline='sleep 60'")
    proc = run_cli(["exp", "cancel", "latest"], env=cli_env)
    assert proc.returncode == 0 and "cancelled 1 job" in proc.stdout
    assert exp.status()["hello"].state.value == "CANCELLED"
    assert run_cli(["exp", "cancel", "latest"], env=cli_env).returncode == 0  # idempotent


def test_bad_ids_are_one_line_errors(cli_env: dict[str, str]) -> None:
    _launch(cli_env, "task=hello", "name=a")
    _launch(cli_env, "task=hello", "name=b")
    for ref, text in (("nope", "no experiment 'nope'"), ("2", "ambiguous")):
        proc = run_cli(["exp", "status", ref], env=cli_env)
        assert proc.returncode == 2 and text in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert run_cli(["exp", "logs", "latest", "nojob"], env=cli_env).returncode == 2


def _order_conf(tmp_path: Path, log: Path, extra: str = "") -> Path:
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "order.yaml").write_text(textwrap.dedent(f"""\
        defaults:
          - /_schema_experiment@_here_
          - _self_
        name: order
        tasks:
          evaluate:
            overrides: [task=hello, task.name=evaluate, "task.inline='sleep 0.3; echo evaluate >> {log}'"]
            depends_on: [train]
          train:
            overrides: [task=hello, task.name=train, "task.inline='sleep 1; echo train >> {log}'"]
            depends_on: [prepare]
          prepare:
            overrides: [task=hello, task.name=prepare, "task.inline='sleep 1; echo prepare >> {log}'"]
        {extra}"""))
    return tmp_path / "conf"


def test_multitask_runs_in_dependency_order(cli_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "order.log"
    conf = _order_conf(tmp_path, log)
    proc = run_cli(["--config-dir", str(conf), "experiment=order"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert exp.meta["kind"] == "experiment" and exp.meta["jobs"] == ["prepare", "train", "evaluate"]
    exp.wait(poll=0.2)
    assert log.read_text().split() == ["prepare", "train", "evaluate"]


def test_cycle_and_unknown_dependency_are_config_errors(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    conf = _order_conf(tmp_path, tmp_path / "x.log")
    cycle = run_cli(["--config-dir", str(conf), "experiment=order", "experiment.tasks.prepare.depends_on=[evaluate]"], env=cli_env)
    assert cycle.returncode == 2 and "dependency cycle: " in cycle.stderr, cycle.stderr
    unknown = run_cli(["--config-dir", str(conf), "experiment=order", "experiment.tasks.train.depends_on=[nope]"], env=cli_env)
    assert unknown.returncode == 2 and "unknown job 'nope'" in unknown.stderr, unknown.stderr
    assert not (nemorun_home / "experiments").exists()


def test_upstream_failure_skips_downstream(cli_env: dict[str, str], tmp_path: Path) -> None:
    conf = _order_conf(tmp_path, tmp_path / "o.log")
    proc = run_cli(["--config-dir", str(conf), "experiment=order", 'experiment.tasks.train.overrides=["task=hello","task.name=train","task.inline=exit 3"]'], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    states = exp.wait(poll=0.2)
    assert states["train"].state.value == "FAILED" and states["train"].exit_code == 3
    assert states["evaluate"].state.value == "CANCELLED" and "upstream job train ended FAILED" in states["evaluate"].detail


def test_failed_submission_is_listed_as_failed(cli_env: dict[str, str]) -> None:
    """The launch raises on the failure path; the catalog row must still be refreshed."""
    proc = run_cli(["task=hello", "executor.workdir=/nonexistent"], env=cli_env)
    assert proc.returncode == 2 and "working directory /nonexistent does not exist" in proc.stderr, proc.stderr
    [row] = json.loads(run_cli(["exp", "list", "--json"], env=cli_env).stdout)
    assert row["states"] == {"FAILED": 1}, row
    exp = Experiment.load(row["id"], home=cli_env["NEMORUN_HOME"])
    assert exp.jobs[0].phase == "failed-to-submit" and exp.jobs[0].handle is None


def test_logs_follow_keeps_stderr_apart(cli_env: dict[str, str]) -> None:
    """``exp logs -f`` on a running local job: stderr lines on stderr, stdout lines on stdout."""
    script = "echo out-1; echo err-1 >&2; sleep 1; echo out-2; echo err-2 >&2"
    exp = _launch(cli_env, "task=hello", f"task.inline='{script}'")
    proc = run_cli(["exp", "logs", exp.id, "-f"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["out-1", "out-2"] and proc.stderr.split() == ["err-1", "err-2"], (proc.stdout, proc.stderr)
    assert exp.status()["hello"].state.value == "SUCCEEDED"  # -f returned because the job ended


def _task_file(folder: Path, inline: str, who: str) -> None:
    (folder / "task").mkdir(parents=True, exist_ok=True)
    (folder / "task" / "snap.yaml").write_text(textwrap.dedent(f"""\
        defaults: [/_schema_task@_here_, _self_]
        name: snap
        inline: '{inline}'
        env: {{WHO: {who}}}
        """))


def test_rerun_starts_from_the_stored_config(cli_env: dict[str, str], tmp_path: Path) -> None:
    """The task's config file is edited after the first run: reruns (single and sweep) must not see it."""
    user_conf = tmp_path / "user-conf"
    env = dict(cli_env, NEMORUN_CONFIG_PATH=str(user_conf))
    _task_file(user_conf, 'echo "$WHO" first-file', "alice")
    single = _launch(env, "task=snap")
    sweep = _launch(env, "-m", "task=snap", "task.env.WHO=carol,dave")
    _task_file(user_conf, 'echo "$WHO" edited-file', "mallory")

    again = run_cli(["exp", "rerun", single.id, "task.env.WHO=bob", "--json"], env=env)
    assert again.returncode == 0, again.stderr
    new = Experiment(Path(json.loads(again.stdout)["path"]))
    assert new.wait(poll=0.2)["snap"].state.value == "SUCCEEDED"
    assert "".join(new.logs("snap")).split() == ["bob", "first-file"]
    assert new.meta["overrides"] == ["task=snap", "task.env.WHO=bob"]

    again = run_cli(["exp", "rerun", sweep.id, "--json"], env=env)
    assert again.returncode == 0, again.stderr
    new = Experiment(Path(json.loads(again.stdout)["path"]))
    assert new.meta["kind"] == "sweep" and {s.state.value for s in new.wait(poll=0.2).values()} == {"SUCCEEDED"}
    assert ["".join(new.logs(j)).split() for j in ("snap-0", "snap-1")] == [["carol", "first-file"], ["dave", "first-file"]]

    count = len(json.loads(run_cli(["exp", "list", "--json"], env=env).stdout))
    for bad, text in (("task.envv.WHO=x", "task.envv"), ("executor.retries=x", "executor.retries"),
                      ("executor=slurm", "selects a config group option"), ("task.env.WHO=a,b", "not sweeps")):
        proc = run_cli(["exp", "rerun", single.id, bad], env=env)
        assert proc.returncode == 2 and text in proc.stderr and len(proc.stderr.splitlines()) == 1, (bad, proc.stderr)
    assert len(json.loads(run_cli(["exp", "list", "--json"], env=env).stdout)) == count  # nothing half-recorded
