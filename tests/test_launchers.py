"""Launchers (torchrun, ft_launcher) in every form: option checks against the real option lists,
config errors through the real CLI, and a real 2-process gloo run under torchrun.

Shell variables in a rendered command are replaced by bash itself: the setup lines and the
command run in bash with sample platform variables (and a stub ``scontrol``), and the command
prints its own argv — so what is checked is what a node would execute.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nemorun import launchers
from nemorun.lower import compile_job
from nemorun.ir import Job
from nemorun.render import shjoin
from tests.helpers import PINNED_SITE, compose_config, run_cli

HAS_TORCH = importlib.util.find_spec("torch") is not None

# What each platform sets on a node (sample values), per form.
SAMPLE_ENV: dict[str, dict[str, str]] = {
    "local": {},
    "docker": {},
    "slurm": {"SLURM_JOB_NODELIST": "node[001-002]", "SLURM_NODEID": "1", "SLURM_JOB_ID": "4242"},
    "kubernetes": {"PET_MASTER_ADDR": "job-node-0-0.job", "PET_MASTER_PORT": "29500", "PET_NODE_RANK": "1"},
    "dgxcloud": {"MASTER_ADDR": "wl-master-0", "MASTER_PORT": "23456", "RANK": "1"},
    "lepton": {"LEPTON_JOB_NAME": "job", "LEPTON_SUBDOMAIN": "job-svc", "LEPTON_JOB_WORKER_INDEX": "1"},
    "skypilot": {"SKYPILOT_NODE_IPS": "10.0.0.1\n10.0.0.2", "SKYPILOT_NODE_RANK": "1"},
}
EXPECTED_HEAD = {
    "slurm": "node001:29500",
    "kubernetes": "job-node-0-0.job:29500",
    "dgxcloud": "wl-master-0:23456",
    "lepton": "job-0.job-svc:29500",
    "skypilot": "10.0.0.1:29500",
}
TASKS = {
    "function": ["task=train"],
    "inline": ["task=hello"],
    "script": ["task=hello", "task.inline=null", "task.script=train.py", "task.args=[--lr, '0.1', 'two words']"],
}


def _job(overrides: list[str], nodes: int) -> Job:
    job = compile_job(compose_config(overrides), PINNED_SITE)
    return dataclasses.replace(job, resources=dataclasses.replace(job.resources, nodes=nodes))


def _expanded_argv(job: Job, form: str, argv: list[str]) -> list[str]:
    """Run the setup lines and print the wrapped command's words, NUL-separated, with bash."""
    wrapped = launchers.wrap(job, argv, form)  # type: ignore[arg-type]
    script = "\n".join(
        ["set -euo pipefail", 'scontrol() { printf "node001\\nnode002\\n"; }']
        + launchers.setup_lines(job, form)  # type: ignore[arg-type]
        + ["printf '%s\\0' " + shjoin(wrapped)]
    )
    env = {"PATH": "/usr/bin:/bin", **SAMPLE_ENV[form]}
    out = subprocess.run(["bash", "-c", script], capture_output=True, env=env, check=True).stdout
    return out.decode().split("\0")[:-1]


def _parse(program: str, args: list[str]) -> Any:
    """Parse with the real option list: torch's own parser when installed, else the help file."""
    from tests.contracts import cli_flag_errors

    errors = cli_flag_errors(args, program)
    assert not errors, f"{program} {args}: {errors}"
    if program == "torchrun" and HAS_TORCH:
        from torch.distributed.run import get_args_parser

        return get_args_parser().parse_args(args)  # exits (SystemExit) on a bad option or value
    return None


CASES = [(f, k, t) for f in launchers.FORMS for k in ("torchrun", "ft") for t in TASKS]


@pytest.mark.parametrize("form,kind,task", CASES, ids=["-".join(c) for c in CASES])
def test_rendered_command_passes_the_real_option_list(form: str, kind: str, task: str) -> None:
    nodes = 1 if form in ("local", "docker") else 2
    job = _job([*TASKS[task], f"launcher={kind}", "launcher.nproc_per_node=4", "launcher.max_restarts=2"], nodes)
    from nemorun.command import task_argv

    argv = task_argv(job, "/job/function.yaml")
    words = _expanded_argv(job, form, argv)
    program = "ft_launcher" if kind == "ft" else "torchrun"
    prefix = launchers.program(job, form)  # type: ignore[arg-type]
    assert words[: len(prefix)] == prefix
    args = words[len(prefix):]
    ns = _parse(program, args)
    # the task's own command survives the wrap word for word
    tail = argv[1:] if argv[0] == job.python else ["--no-python", *argv]
    assert args[-len(tail):] == tail
    assert "--nproc-per-node" in args and args[args.index("--nproc-per-node") + 1] == "4"
    if nodes == 1:
        assert "--standalone" in args
    else:
        assert args[args.index("--rdzv-endpoint") + 1] == EXPECTED_HEAD[form]
        assert args[args.index("--node-rank") + 1] == "1"
        assert args[args.index("--nnodes") + 1] == "2"
    if kind == "ft":
        assert "--ft-ignore-missing-cfg" in args and "--ignore-missing-fault-tol-cfg" not in args
    if ns is not None:
        assert ns.nproc_per_node == "4" and ns.max_restarts == 2


def test_ft_settings_use_the_current_spelling() -> None:
    job = _job(["task=train", "launcher=ft", "launcher.rank_heartbeat_timeout=60", "launcher.log_level=DEBUG",
                "launcher.rank_termination_signal=SIGKILL", "launcher.extra_args=[--ft-restart-policy, any-failed]"], 1)  # fmt: skip
    args = launchers.launcher_options(job, "local")
    _parse("ft_launcher", [*args, "train.py"])
    assert args[args.index("--ft-rank-heartbeat-timeout") + 1] == "60.0"
    assert "--ft-ignore-missing-cfg" not in args  # settings given: no need to ignore a missing config


def test_default_nproc_comes_from_the_executor() -> None:
    job = _job(["task=train", "launcher=torchrun", "executor.ntasks_per_node=3"], 1)
    args = launchers.launcher_options(job, "local")
    assert args[args.index("--nproc-per-node") + 1] == "3"


def test_multi_node_on_a_single_node_form_is_refused() -> None:
    from nemorun.errors import ConfigError

    job = _job(["task=train", "launcher=torchrun"], 2)
    with pytest.raises(ConfigError, match="one node"):
        launchers.wrap(job, ["python3", "x.py"], "docker")


@pytest.mark.parametrize(
    "extra,message",
    [
        ("[--nproc-per-nodes, '2']", "torchrun has no option --nproc-per-nodes; did you mean --nproc-per-node"),
        ("[--nnodes, '2']", "--nnodes is set by nemorun"),
        ("['--nproc_per_node=2']", "--nproc_per_node is set by nemorun"),
        ("[--tee]", "option --tee needs a value"),
        ("[stray]", "'stray' is not a torchrun option"),
    ],
)
def test_bad_extra_args_fail_through_the_cli(extra: str, message: str, cli_env: dict[str, str]) -> None:
    proc = run_cli(["task=hello", "launcher=torchrun", f"launcher.extra_args={extra}", "dryrun=true"], env=cli_env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("nemorun: error: ") and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_removed_ft_flag_names_its_replacement(cli_env: dict[str, str]) -> None:
    proc = run_cli(["task=hello", "launcher=ft", "launcher.extra_args=[--ignore-missing-fault-tol-cfg]", "dryrun=true"], env=cli_env)
    assert proc.returncode == 2
    assert "use --ft-ignore-missing-cfg" in proc.stderr, proc.stderr


def test_bad_launcher_option_fails_through_the_cli(cli_env: dict[str, str]) -> None:
    proc = run_cli(["task=hello", "launcher=torchrun", "launcher.nproc_per_nodes=2", "dryrun=true"], env=cli_env)
    assert proc.returncode == 2
    assert "nproc_per_nodes" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = run_cli(["task=hello", "launcher=torchrun", "launcher.nproc_per_node=two", "dryrun=true"], env=cli_env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install torch==2.13.0)")
def test_local_torchrun_runs_two_gloo_ranks(cli_env: dict[str, str], tmp_path: Path) -> None:
    proc = run_cli(
        ["task=ddp", "launcher=torchrun", "launcher.nproc_per_node=2", "wait=true"], env=cli_env, cwd=str(tmp_path), timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = sorted(line for line in proc.stdout.splitlines() if line.startswith("rank="))
    assert [line.split()[:2] for line in lines] == [["rank=0", "world_size=2"], ["rank=1", "world_size=2"]], proc.stdout
    assert all("rank_sum=1" in line for line in lines)
