"""A value-only sweep as ONE job array on the real Slurm test cluster (``slurm_cluster`` fixture):
array task i runs row i of the one ``tasks.jsonl``, hostile values included, and a launch killed
between recording the array as submitted and recording its tasks is completed by ``--resume``
without a second array."""
from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest

from nemorun.api import Experiment
from nemorun.command import TASK_TABLE
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import run_cli
from tests.test_crash_find import _slurm_jobs

pytestmark = pytest.mark.slurm

# Hydra's quoted-string syntax: inside '...' a quote is \' ; commas separate the sweep's values
HOSTILE = {
    "'$(touch /tmp/nemorun-pwned) `id` ;# {p;q}'": "$(touch /tmp/nemorun-pwned) `id` ;# {p;q}",
    "'it\\'s \"quoted\"'": "it's \"quoted\"",
    "'unicode é 你 \u2028 sep'": "unicode é 你 \u2028 sep",
    "plain": "plain",
}

MYMOD = textwrap.dedent("""\
    import json, os

    def show(text: str, n: int = 0) -> int:
        print("ROW " + json.dumps({"text": text, "task": os.environ.get("SLURM_ARRAY_TASK_ID")}))
        return 0
    """)


def test_array_task_i_runs_row_i(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "mymod.py").write_text(MYMOD)
    proc = run_cli(["-m", "executor=slurm", "task=hello", "task.inline=null", "task.target=mymod.show",
                    f"+task.params.text={','.join(HOSTILE)}", "+task.params.n=1", "packager=pattern",
                    "packager.include_pattern=mymod.py"], env=cli_env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    [array] = list(exp.meta["arrays"])
    assert sorted(exp.record.job(array).artifacts) == ["nemorun_entry.py", "sbatch.sh", TASK_TABLE]  # what was sent
    assert {s.state.value for s in exp.wait(poll=0.5).values()} == {"SUCCEEDED"}
    for i, value in enumerate(HOSTILE.values()):
        name = exp.meta["arrays"][array][i]
        rows = [json.loads(line[4:]) for line in "".join(exp.logs(name)).splitlines() if line.startswith("ROW ")]
        assert rows == [{"text": value, "task": str(i)}], (name, rows)
    assert not Path("/tmp/nemorun-pwned").exists()
    status = json.loads(run_cli(["exp", "status", exp.id, "--json"], env=cli_env).stdout)
    assert {j["state"] for j in status["jobs"].values()} == {"SUCCEEDED"} and len(status["jobs"]) == len(HOSTILE)


@pytest.mark.parametrize("fault, array_phase", [("tasks-recorded", None), ("array-tasks", "submitted")])
def test_crash_around_the_task_batch(slurm_cluster: SlurmCluster, cli_env: dict[str, str], fault: str,
                                     array_phase: str | None) -> None:
    """SIGKILL after the tasks' batch but before the array's own record (nothing sent), or once
    the array is recorded submitted but before its tasks' batch: ``--resume`` ends with exactly
    one array on the cluster and every task holding its own handle."""
    args = ["-m", "executor=slurm", "task=train", "task.params.steps=2", "task.params.lr=0.1,0.2,0.3"]
    proc = run_cli(args, env=dict(cli_env, NEMORUN_FAULT=fault))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    array = exp.record.try_job("train-array")
    assert (array.phase if array else None) == array_phase and {j.phase for j in exp.jobs} == {"rendered"}
    resumed = run_cli(["exp", "rerun", exp.id, "--resume"], env=cli_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming, 3 of 3 jobs not yet submitted" in resumed.stdout
    exp = Experiment(exp.path)
    array = exp.record.job("train-array")
    listed = _slurm_jobs(exp.record.job_dir("train-array") / "sbatch.sh")
    assert {b for _, b in listed} == {array.handle["id"]} and len(listed) == 3  # one array, never a second
    assert [j.handle["id"] for j in exp.jobs] == [f"{array.handle['id']}_{i}" for i in range(3)]
    assert {s.state.value for s in exp.wait(poll=0.5).values()} == {"SUCCEEDED"}
