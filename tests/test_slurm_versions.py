"""sbatch/srun option names per Slurm release (issue 15 item 6).

The package's lists are compared with the help texts they were made from (22.05.8: the real
binaries, tests/contracts/cli; 24.11.7 / 25.11.7: rebuilt from SchedMD's source,
tests/contracts/slurm). On the real 22.05.8 test cluster: every option the current release
added is refused by the real sbatch (so the 22.05 list is right to lack it), and a job composed
for the default release that uses one is refused at submission by asking the cluster itself,
before anything is written there; the answer is cached per cluster.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from nemorun import slurm_flags, slurm_probe
from nemorun.lower import check_config, compile_job
from nemorun.plan import render_job
from nemorun.api import Experiment
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import PINNED_SITE, compose_config, run_cli

CONTRACTS = Path(__file__).resolve().parent / "contracts"
LONG = re.compile(r"^ {2,6}(?:-[A-Za-z0-9],?\s+)?--([A-Za-z0-9][-A-Za-z0-9_]*)", re.M)


def _names(*files: Path) -> set[str]:
    return set().union(*(LONG.findall(f.read_text()) for f in files))


@pytest.mark.parametrize("program", ["sbatch", "srun"])
def test_22_05_list_is_the_real_binarys(program: str) -> None:
    cli = CONTRACTS / "cli"
    names = _names(cli / f"{program}-22.05.8-pyxis-0.24.0.help.txt", cli / f"{program}-22.05.8.man-only-options.txt")
    assert slurm_flags.RELEASES["22.05"].options(program) == names


@pytest.mark.parametrize("version", ["24.11", "25.11"])
@pytest.mark.parametrize("program", ["sbatch", "srun"])
def test_newer_lists_are_the_upstream_help_texts(version: str, program: str) -> None:
    """Help text + man-only names, without --power (no longer in the getopt table), plus Pyxis."""
    d = CONTRACTS / "slurm"
    names = _names(d / f"{program}-{version}.7.help.txt", d / f"{program}-{version}.7.man-only-options.txt")
    assert "power" in names  # stale in the help text: the reason for the exception below
    assert slurm_flags.RELEASES[version].options(program) == (names - {"power"}) | slurm_flags.PYXIS_OPTIONS


def test_what_changed_between_releases() -> None:
    old, new = slurm_flags.RELEASES["22.05"], slurm_flags.RELEASES[slurm_flags.CURRENT]
    assert {"segment", "tres-per-task", "oom-kill-step"} <= new.sbatch - old.sbatch
    assert "power" in old.sbatch - new.sbatch and {"uid", "gid"} <= old.srun - new.srun
    assert "topo" in new.exclusive_modes and "topo" not in old.exclusive_modes
    assert ("exclusive", "oversubscribe") in new.conflicting and ("exclusive", "oversubscribe") not in old.conflicting


def test_release_matches_major_minor_only() -> None:
    assert slurm_flags.release("22.05.8") is slurm_flags.RELEASES["22.05"]
    with pytest.raises(ValueError, match="use one of 22.05, 24.11, 25.11"):
        slurm_flags.release("23.02")


def _refused(overrides: list[str], cli_env: dict[str, str], *, multirun: bool = False) -> str:
    r = run_cli([*(["-m"] if multirun else []), "executor=slurm", "task=hello", *overrides, "dryrun=true"], env=cli_env)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and r.stdout == "" and len(lines) == 1 and lines[0].startswith("nemorun: error: "), r.stderr
    return lines[0]


def _script(*overrides: str) -> str:
    cfg = compose_config(["executor=slurm", "task=hello", *overrides])
    check_config(cfg)
    return render_job(compile_job(cfg, PINNED_SITE)).artifacts["sbatch.sh"]


@pytest.mark.parametrize("overrides, message", [
    (["+executor.additional_parameters.segment=2", "executor.slurm_version=22.05"],
     "'--segment' is not a sbatch option (Slurm 24.11, 25.11 have it; executor.slurm_version is 22.05)"),
    (["+executor.additional_parameters.power=level"], "'--power' is not a sbatch option (Slurm 22.05 has it; executor.slurm_version is 25.11)"),
    (["executor.srun_args=['--uid=1']"], "srun_args: '--uid' is not a srun option (Slurm 22.05 has it"),
    (["executor.exclusive=topo", "executor.slurm_version=22.05.8"], "exclusive='topo' needs a newer Slurm than 22.05.8"),
    (["executor.exclusive=true", "+executor.additional_parameters.oversubscribe=true"],
     "executor.exclusive and executor.additional_parameters.oversubscribe cannot be used together"),
    (["executor.slurm_version=23.02"], "slurm_version is not a Slurm release nemorun has option lists for; use one of 22.05, 24.11, 25.11"),
])  # fmt: skip
def test_refused_for_the_chosen_release(overrides: list[str], message: str, cli_env: dict[str, str]) -> None:
    assert message in _refused(overrides, cli_env)


def test_sweep_values_are_checked_per_release(cli_env: dict[str, str]) -> None:
    """A sweep over the release: the 22.05 point is refused before anything is rendered."""
    line = _refused(["executor.slurm_version=25.11,22.05", "+executor.additional_parameters.segment=2"], cli_env, multirun=True)
    assert "'--segment' is not a sbatch option (Slurm 24.11, 25.11 have it; executor.slurm_version is 22.05)" in line


@pytest.mark.parametrize("overrides, line", [
    (["+executor.additional_parameters.segment=2"], "#SBATCH --segment=2\n"),
    (["executor.exclusive=topo", "executor.slurm_version=24.11"], "#SBATCH --exclusive=topo\n"),
    (["executor.exclusive=true", "+executor.additional_parameters.oversubscribe=true", "executor.slurm_version=22.05"], "#SBATCH --oversubscribe\n"),
    (["executor.srun_args=['--uid=1']", "executor.slurm_version=22.05"], "--uid=1"),
])  # fmt: skip
def test_accepted_for_the_chosen_release(overrides: list[str], line: str) -> None:
    assert line in _script(*overrides)


def test_probe_output_parsing_and_what_a_cluster_accepts() -> None:
    """Parsed from the real 22.05.8 help texts: --open-mode (documented outside --help) counts;
    Pyxis's options count only when the cluster's --help shows them."""
    cli = CONTRACTS / "cli"
    sbatch, srun = ((cli / f"{p}-22.05.8-pyxis-0.24.0.help.txt").read_text() for p in ("sbatch", "srun"))
    sep = slurm_probe._SEP
    found = slurm_probe.parse_probe("c", f"slurm 22.05.8\n{sep}\n{sbatch}{sep}\n{srun}", now=0.0)
    assert found.version == "22.05.8" and {"open-mode", "container-image"} <= found.accepts("sbatch")
    assert "segment" not in found.accepts("sbatch")
    no_pyxis = slurm_probe.parse_probe("c", f"slurm 23.02.1\n{sep}\n{sbatch.replace('--container-image', '--x-image')}{sep}\n{srun}", now=0.0)
    assert "container-image" not in no_pyxis.accepts("sbatch") and "open-mode" in no_pyxis.accepts("sbatch")
    script = _script("+executor.additional_parameters.segment=2")
    assert slurm_probe.unknown_on_cluster(found, script) == ("sbatch", "segment")
    assert slurm_probe.unknown_on_cluster(found, _script("executor.retries=1")) is None


# --- the real 22.05.8 cluster -----------------------------------------------------------------

@pytest.mark.slurm
def test_real_22_05_sbatch_refuses_what_only_newer_releases_have(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """Each option 25.11 added is unknown to the real 22.05.8 sbatch: "unrecognized", or (worse) taken
    silently as a prefix of a longer 22.05 option (``--extra`` = ``--extra-node-info``), which is
    why nemorun checks exact names per release instead of trusting the cluster to refuse."""
    added = sorted(slurm_flags.RELEASES["25.11"].sbatch - slurm_flags.RELEASES["22.05"].sbatch)
    assert added
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    for name in added:
        r = subprocess.run(["sbatch", "--test-only", f"--{name}=1", str(script)], capture_output=True, text=True)
        longer = [k for k in slurm_flags.RELEASES["22.05"].sbatch if k.startswith(name)]
        assert (r.returncode != 0 and "unrecognized option" in r.stderr) or longer, (name, r.stderr)


def _cache_files(cli_env: dict[str, str]) -> list[Path]:
    return sorted((Path(cli_env["NEMORUN_HOME"]) / "cache" / "slurm").glob("*.json"))


@pytest.mark.slurm
def test_cluster_of_another_release_is_asked_before_submitting(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    r = run_cli(["executor=slurm", "task=hello", f"executor.job_dir={jobs}", "+executor.additional_parameters.segment=2"], env=cli_env)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr  # a config error, found by asking the cluster
    assert not Experiment.load("latest", home=cli_env["NEMORUN_HOME"]).record.job("hello").in_doubt
    assert "sbatch on localhost (Slurm 22.05.8) has no option --segment, which executor.slurm_version=25.11 allows" in lines[0]
    assert "set executor.slurm_version=22.05" in lines[0]
    assert not jobs.exists(), "nothing may be written on the cluster"
    [cache] = _cache_files(cli_env)
    probed = json.loads(cache.read_text())
    assert probed["version"] == "22.05.8" and "gpus-per-node" in probed["sbatch"] and "segment" not in probed["sbatch"]
    # the next job on this cluster uses the cache (same probe time) and, asking nothing new, runs
    r = run_cli(["executor=slurm", "task=hello", f"executor.job_dir={jobs}", "executor.retries=1", "wait=true"], env=cli_env)
    assert r.returncode == 0, r.stderr
    assert json.loads(cache.read_text())["checked_at"] == probed["checked_at"]


@pytest.mark.slurm
def test_cluster_of_the_chosen_release_is_not_asked(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    """executor.slurm_version=22.05 on a 22.05.8 cluster: the lists already judged the config."""
    r = run_cli(["executor=slurm", "task=hello", "executor.slurm_version=22.05", f"executor.job_dir={tmp_path}"], env=cli_env)
    assert r.returncode == 0, r.stderr
    [cache] = _cache_files(cli_env)  # the version is asked (cached), the options need no check
    assert json.loads(cache.read_text())["version"] == "22.05.8"


@pytest.mark.slurm
def test_refusal_of_a_later_task_sends_no_task(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    """Three tasks on the 22.05.8 cluster; only the third uses an option that release lacks. The probe
    judges every task before the first is sent: a one-line config error, and NO task submitted
    (before, the first two were running when the third was refused)."""
    jobs = tmp_path / "jobs"
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "three.yaml").write_text(
        "defaults: [/_schema_experiment@_here_, _self_]\nname: three\ntasks:\n"
        "  first: {overrides: [task=hello, task.name=first]}\n"
        "  second: {overrides: [task=hello, task.name=second], depends_on: [first]}\n"
        "  third: {overrides: [task=hello, task.name=third, +executor.additional_parameters.segment=2]}\n")
    r = run_cli(["--config-dir", str(tmp_path / "conf"), "experiment=three", "executor=slurm", f"executor.job_dir={jobs}"], env=cli_env)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("nemorun: error: job third was not submitted"), r.stderr
    assert "has no option --segment" in lines[0] and "no job of this launch was sent" in lines[0]
    record = Experiment.load("latest", home=cli_env["NEMORUN_HOME"]).record
    assert [record.job(n).phase for n in ("first", "second", "third")] == ["rendered", "rendered", "failed-to-submit"]
    assert not any(record.job(n).in_doubt for n in ("first", "second"))
    assert not jobs.exists(), "nothing may be written on the cluster"
    queued = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True, check=True).stdout.split()
    assert not {"first", "second", "third"} & set(queued)
