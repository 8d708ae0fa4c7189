"""``max_parallel``: a documented top-level key, honoured by job arrays (``%N``) and by every other
sweep (N lanes of dependencies), refused where it cannot mean anything. Real local jobs; Slurm
is checked on its rendered script (the array line) and on the plan (lanes use ``--dependency``,
rendered at submission by nemorun.execute)."""
from __future__ import annotations

from pathlib import Path

from nemorun import compose
from nemorun.plan import default_site, plan
from tests.helpers import run_cli


def _plan(overrides: list[str]):  # type: ignore[no-untyped-def]
    with compose.hydra_context() as loader:
        return plan(compose.sweep_batch(overrides), compose.FilesComposer(loader), default_site(),
                    command_overrides=overrides, multirun=True)


def test_max_parallel_is_shown_in_help(cli_env: dict[str, str]) -> None:
    proc = run_cli(["--help"], env=cli_env)
    assert proc.returncode == 0 and "max_parallel: null" in proc.stdout and "max_parallel=2" in proc.stdout


def test_local_sweep_runs_at_most_n_jobs_at_once(cli_env: dict[str, str], tmp_path: Path) -> None:
    times = tmp_path / "times"
    inline = f'task.inline="echo start $(date +%s.%N) >> {times}; sleep 0.6; echo end $(date +%s.%N) >> {times}"'
    proc = run_cli(["-m", "task=hello", inline, "task.env.I=1,2,3", "max_parallel=1", "wait=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    events = [line.split() for line in times.read_text().splitlines()]
    assert [e[0] for e in events] == ["start", "end"] * 3  # never two running at once
    assert all(float(a[1]) <= float(b[1]) for a, b in zip(events, events[1:]))


def test_lanes_on_a_sweep_that_is_not_an_array(nemorun_home: Path) -> None:
    the_plan = _plan(["executor=slurm", "task=script", "task.script=run.sh", "task.args=[a],[b],[c],[d],[e]", "max_parallel=2"])
    assert the_plan.array is None  # script tasks stay separate jobs
    assert [(p.depends_on, p.dependency_type) for p in the_plan.jobs] == [
        ((), "afterok"), ((), "afterok"), (("script-0",), "afterany"), (("script-1",), "afterany"), (("script-2",), "afterany")]
    unlimited = _plan(["executor=slurm", "task=script", "task.script=run.sh", "task.args=[a],[b],[c]"])
    assert all(not p.depends_on for p in unlimited.jobs)


def test_array_takes_the_top_level_key_and_the_old_spelling(nemorun_home: Path) -> None:
    sweep = ["executor=slurm", "task=train", "task.params.lr=0.1,0.2,0.3"]
    for extra in (["max_parallel=2"], ["hydra.launcher.max_parallel=2"]):
        with compose.hydra_context() as loader:
            the_plan = plan(compose.sweep_batch(sweep + extra), compose.FilesComposer(loader), default_site(),
                            command_overrides=sweep + extra, multirun=True, max_parallel=2 if extra[0].startswith("hydra") else None)
        assert the_plan.array is not None and "#SBATCH --array=0-2%2\n" in the_plan.array.rendered.artifacts["sbatch.sh"]
        assert all(not p.depends_on for p in the_plan.jobs)  # the array limits itself


def test_max_parallel_refused_where_it_means_nothing(cli_env: dict[str, str]) -> None:
    for args, text in ((["task=hello", "max_parallel=2"], "this launch is one job"),
                       (["-m", "task=hello", "task.env.I=1,2", "max_parallel=0"], "max_parallel must be a whole number >= 1"),
                       (["-m", "task=hello", "task.env.I=1,2", "max_parallel=2", "hydra.launcher.max_parallel=3"], "disagree")):
        proc = run_cli([*args, "dryrun=true"], env=cli_env)
        assert proc.returncode == 2 and text in proc.stderr and len(proc.stderr.splitlines()) == 1, (args, proc.stderr)
