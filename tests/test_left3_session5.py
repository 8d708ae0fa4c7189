"""Session 5, wave 3 (LEFT3): the record's batch writes honour the compare-and-swap that
``save_job`` does (a cancel and a submission never lose each other), ``exp cancel`` of an array
whose launch wins the race cancels it on the backend, and ``hydra: searchpath:`` written in a
config file is refused like the override. Real store, real processes (two racers on one record),
the real Slurm cluster (tests/fixtures) for the array, the real CLI and Python API for composing."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nemorun.states import AppState
from nemorun.store import ExperimentRecord, JobRecord
from tests.test_left2_session5 import RACER, _new_record, _start

# -- 1. save_jobs / write_jobs: the compare-and-swap of save_job, for a whole batch --------------


def _marked(path: Path, name: str) -> JobRecord:
    """``exp cancel ID TASK`` from another nemorun: the job marked as api.Experiment.cancel does."""
    other = ExperimentRecord(path)
    rec = other.job(name)
    rec.state, rec.detail = AppState.CANCELLED.value, "cancelled before submission"
    other.save_job(rec)
    return rec


@pytest.mark.parametrize("writer", ["save_jobs", "write_jobs"])
def test_a_batch_written_over_a_cancel_mark_keeps_it_and_returns_it(nemorun_home: Path, writer: str) -> None:
    """The batch read j1 before the cancel marked it: before, its write put SUBMITTED (or the
    fresh rendered record) over the mark and the job ran; now the mark's record is merged in
    (cancel_wins) and returned, so the launch cancels what it sent. j0, not raced, is written as is."""
    record = _new_record(nemorun_home, ["j0", "j1"])
    record.save_jobs((JobRecord(name=n, target="local") for n in ("j0", "j1")), compact=False)
    batch = [record.job("j0"), record.job("j1")]
    _marked(record.path, "j1")
    for rec in batch:
        rec.phase, rec.handle, rec.state = "submitted", {"backend": "local", "id": rec.name}, AppState.SUBMITTED.value
    if writer == "save_jobs":
        raced = record.save_jobs(batch)
    else:
        raced = record.write_jobs((rec, {"run.sh": f"echo {rec.name}\n"}) for rec in batch)
    assert [(r.name, r.state, r.handle) for r in raced] == [("j1", "CANCELLED", None)]
    j0, j1 = ExperimentRecord(record.path).job("j0"), ExperimentRecord(record.path).job("j1")
    assert (j0.state, j0.handle) == ("SUBMITTED", {"backend": "local", "id": "j0"})
    assert j1.handle == {"backend": "local", "id": "j1"} and j1.detail == "exp cancel came while it was being submitted"
    assert batch[1].rev == j1.rev  # the batch's records took what was written
    if writer == "write_jobs":
        assert (record.job_dir("j1") / "run.sh").read_text() == "echo j1\n" and j1.artifacts == ["run.sh"]


def test_a_cancel_written_after_the_batch_read_a_submitted_record_keeps_the_handle(nemorun_home: Path) -> None:
    """The other way round: a batch (a status's reconcile writing states) built on a record the
    launch then recorded sent must not drop the handle (the record must say what may exist)."""
    record = _new_record(nemorun_home, ["j0"])
    record.save_jobs([JobRecord(name="j0", target="local")], compact=False)
    stale = record.job("j0")
    sent = ExperimentRecord(record.path).job("j0")
    sent.phase, sent.handle, sent.state = "submitted", {"backend": "local", "id": "x"}, AppState.SUBMITTED.value
    ExperimentRecord(record.path).save_job(sent)
    stale.state, stale.cancelled_at = AppState.CANCELLED.value, 1.0
    assert [r.handle for r in record.save_jobs([stale])] == [{"backend": "local", "id": "x"}]
    got = record.job("j0")
    assert (got.phase, got.handle, got.cancelled_at) == ("submitted", {"backend": "local", "id": "x"}, 1.0)


# the launch's side of the race: an array's tasks recorded sent in batches of 3 (execute._submit_array);
# it waits for the cancel to have marked the batch's second task before writing, so every batch races
BATCH_LAUNCH = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from nemorun.states import AppState
    from nemorun.store import ExperimentRecord
    path, rounds, out = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    record, acted, raced_seen = ExperimentRecord(path), [], 0
    (path / "ready-batch").write_text("")
    while not (path / "go").exists():
        time.sleep(0.001)
    for first in range(0, rounds, 3):
        batch = [record.job(f"j{k}") for k in range(first, min(first + 3, rounds))]
        acted += [r.name for r in batch if r.state == AppState.CANCELLED.value]  # marked before the read
        while first + 1 < rounds and record.job(f"j{first + 1}").state != AppState.CANCELLED.value:
            time.sleep(0.001)
        for r in batch:
            r.phase, r.handle, r.state = "submitted", {"backend": "local", "id": r.name}, AppState.SUBMITTED.value
        raced = [t.name for t in record.save_jobs(batch) if t.state == AppState.CANCELLED.value and t.handle is None]
        acted += [n for n in raced if n not in acted]  # marked between the read and the write
        raced_seen += len(raced)
    Path(out).write_text("\\n".join(acted) + f"\\nraced={raced_seen}")
''')


def test_a_cancel_racing_a_batch_of_task_records_never_loses_either(tmp_path: Path, nemorun_home: Path) -> None:
    """Two processes: the launch recording an array's tasks sent in batches, ``exp cancel`` marking
    each task (the racer of test_left2_session5, paced one batch behind so the two interleave).
    Every task keeps its handle, and exactly one side cancels it on the backend."""
    rounds = 60
    record = _new_record(nemorun_home, [f"j{k}" for k in range(rounds)])
    record.save_jobs(JobRecord(name=f"j{k}", target="local") for k in range(rounds))
    cancel = tmp_path / "cancel.py"
    read = "\n    rec = record.job(name)\n"
    assert RACER.count(read) == 1
    cancel.write_text(RACER.replace(read, "\n    while k >= 2 and record.job(f'j{k - 2}').handle is None:\n"  # never a batch ahead
                                          "        time.sleep(0.001)" + read))
    launch = tmp_path / "launch.py"
    launch.write_text(BATCH_LAUNCH)
    procs = [subprocess.Popen([sys.executable, str(launch), str(record.path), str(rounds), str(tmp_path / "by_launch")]),
             subprocess.Popen([sys.executable, str(cancel), "cancel", str(record.path), str(rounds), str(tmp_path / "by_cancel")])]
    _start(record.path, ["batch", "cancel"])
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    *by_launch, raced = (tmp_path / "by_launch").read_text().split()
    by_cancel = (tmp_path / "by_cancel").read_text().split()
    for k in range(rounds):
        rec = record.job(f"j{k}")
        assert rec.handle == {"backend": "local", "id": f"j{k}"} and rec.phase == "submitted", rec  # never lost
        assert (f"j{k}" in by_launch) != (f"j{k}" in by_cancel), (k, rec, by_launch, by_cancel)  # nor the cancel
    assert by_cancel and raced != "raced=0", "the batch never raced a mark: the test did not exercise the swap"


# -- 2. exp cancel of an array the launch records sent between the cancel's read and its write ----


@pytest.mark.slurm
def test_exp_cancel_of_an_array_sent_before_its_mark_cancels_it_on_slurm(slurm_cluster: object, cli_env: dict[str, str],
                                                                         tmp_path: Path) -> None:
    """The cancel read the array's record unsent (sbatch still running), the launch recorded it
    sent, then the cancel's mark lost the compare-and-swap: the record kept the handle, but the
    array was not cancelled on Slurm, and the launch (killed here right after recording the array
    sent, before its tasks) never would: the tasks read "cancelled before submission" while all
    of them ran. The cancel is held between its read and its write until the launch has written
    (the real launch process, the real cluster; no timing guess)."""
    import time

    from nemorun.api import Experiment
    from tests.test_adversarial_session5 import _slow_sbatch
    from tests.test_crash_find import _slurm_jobs

    started, bin_dir = _slow_sbatch(tmp_path, "submission")
    args = ["-m", "executor=slurm", "task=train", "task.params.steps=200", "task.params.sleep=0.1", "task.params.lr=0.1,0.2"]
    launch = subprocess.Popen([sys.executable, "-m", "nemorun", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(cli_env, PATH=f"{bin_dir}:{cli_env['PATH']}", NEMORUN_FAULT="array-tasks"))
    deadline = time.monotonic() + 120  # a bound on a poll loop, not a timing assertion
    while not started.exists():
        assert launch.poll() is None and time.monotonic() < deadline, launch.communicate()
        time.sleep(0.05)
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    [(array, tasks)] = exp.meta["arrays"].items()
    save_job = exp.record.save_job

    def after_the_launch(rec: JobRecord, reapply: object = None) -> object:
        if rec.name == array and rec.handle is None:  # read unsent: let the launch record it sent first
            assert launch.wait(timeout=120) == -9, launch.communicate()
        return save_job(rec, reapply)  # type: ignore[arg-type]

    exp.record.save_job = after_the_launch  # type: ignore[method-assign]
    exp.cancel()
    rec = ExperimentRecord(exp.record.path).job(array)
    assert rec.phase == "submitted" and rec.cancelled_at is not None, rec
    on_slurm = _slurm_jobs(exp.record.job_dir(array) / "sbatch.sh")
    assert on_slurm, "the array was sent"
    for job_id, _ in on_slurm:
        deadline = time.monotonic() + 60  # scancel is asynchronous: wait for slurmctld to say so
        while (state := subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True,
                                       text=True).stdout.split()) != ["CANCELLED"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state == ["CANCELLED"], (job_id, state)
    assert all(ExperimentRecord(exp.record.path).job(t).cancelled_at is not None for t in tasks)


# -- 3. hydra: searchpath: written in a config file is refused like the override -----------------

GLOBAL_OPTION = "# @package _global_\nhydra:\n  searchpath: [file:///tmp]\n"


def _folder(tmp_path: Path, where: str) -> tuple[Path, Path]:
    """A config folder whose ``where`` file sets hydra.searchpath: an option file (its keys at the
    root, or in Hydra's node) or the primary config (a copy of nemorun's with one line more)."""
    from nemorun import conf

    folder = tmp_path / "conf"
    (folder / "extra").mkdir(parents=True)
    if where == "primary":
        packaged = (Path(conf.__file__).parent / "nemorun.yaml").read_text()
        assert "\nhydra:\n" in packaged
        (folder / "nemorun.yaml").write_text(packaged.replace("\nhydra:\n", "\nhydra:\n  searchpath: [file:///tmp]\n", 1))
        return folder, folder / "nemorun.yaml"
    text = GLOBAL_OPTION if where == "global option" else "# @package hydra\nsearchpath: [file:///tmp]\n"
    (folder / "extra" / "sp.yaml").write_text(text)
    return folder, folder / "extra" / "sp.yaml"


def _refused(line: str, file: Path) -> None:
    assert line == (f"nemorun: error: {file}: hydra.searchpath is not supported in a config file: give your config "
                    "folder with --config-dir DIR (or NEMORUN_CONFIG_PATH), which a launch records so that rerun and "
                    "--resume compose from its copy"), line


@pytest.mark.parametrize("where", ["primary", "global option", "hydra option"])
@pytest.mark.parametrize("sweep", [False, True], ids=["single", "multirun"])
def test_a_searchpath_in_a_config_file_is_refused_naming_the_file(where: str, sweep: bool, tmp_path: Path,
                                                                  cli_env: dict[str, str], nemorun_home: Path) -> None:
    from tests.helpers import one_line_error, run_cli

    folder, file = _folder(tmp_path, where)
    extra = [] if where == "primary" else ["+extra=sp"]
    args = ["--config-dir", str(folder), *(["-m"] if sweep else []), "task=hello", *extra,
            "executor.env_vars.X=1,2" if sweep else "dryrun=true"]
    _refused(one_line_error(run_cli(args, env=cli_env)), file)
    # NEMORUN_CONFIG_PATH is the same folder list: the same refusal
    env = dict(cli_env, NEMORUN_CONFIG_PATH=str(folder))
    _refused(one_line_error(run_cli(["task=hello", *extra, "dryrun=true"], env=env)), file)
    assert not list(nemorun_home.glob("experiments/*/*")), "nothing is recorded"


def test_an_option_file_putting_a_key_named_hydra_elsewhere_is_not_refused(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """The package header says where a file's keys land: ``task.params.hydra.searchpath`` is a
    function parameter, plain data, not Hydra's search path."""
    from tests.helpers import ok, run_cli

    folder = tmp_path / "conf"
    (folder / "extra").mkdir(parents=True)
    (folder / "extra" / "data.yaml").write_text("# @package task.params\nhydra:\n  searchpath: [a]\n")
    out = ok(run_cli(["--config-dir", str(folder), "task=train", "+extra=data", "--cfg", "job"], env=cli_env)).stdout
    assert "    hydra:\n      searchpath:\n      - a\n" in out, out


@pytest.mark.parametrize("sweep", [False, True], ids=["single", "multirun"])
def test_the_python_api_refuses_a_searchpath_in_a_config_file(sweep: bool, tmp_path: Path, nemorun_home: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import nemorun
    from nemorun.errors import ConfigError

    folder, file = _folder(tmp_path, "global option")
    monkeypatch.setenv("NEMORUN_CONFIG_PATH", str(folder))
    with pytest.raises(ConfigError) as err:
        nemorun.launch(["task=hello", "+extra=sp", *(["executor.env_vars.X=1,2"] if sweep else [])], dryrun=True,
                       out=io.StringIO())
    _refused(f"nemorun: error: {err.value}", file)


def test_resume_refuses_a_searchpath_in_the_recorded_config_folder(tmp_path: Path, cli_env: dict[str, str],
                                                                   nemorun_home: Path) -> None:
    """A record made before this refusal may hold such a file in its copy of the config folder
    (simulated: written into the copy): --resume composes from that copy and refuses it the same
    way. (A plain rerun composes from the stored config.yaml, reading no config file.)"""
    from tests.helpers import ok, one_line_error, run_cli
    from tests.test_local import only_experiment

    folder = tmp_path / "conf"
    (folder / "extra").mkdir(parents=True)
    (folder / "extra" / "sp.yaml").write_text("# @package _global_\nname: fine\n")
    ok(run_cli(["--config-dir", str(folder), "task=hello", "+extra=sp", "wait=true"], env=cli_env))
    rec = only_experiment(nemorun_home)
    [copy] = rec.path.glob("config_dirs/*/extra/sp.yaml")
    copy.write_text(GLOBAL_OPTION)
    line = one_line_error(run_cli(["exp", "rerun", rec.path.name, "--resume"], env=cli_env))
    _refused(line, copy)
    assert len(list(nemorun_home.glob("experiments/*/*"))) == 1
