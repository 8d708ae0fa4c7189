"""GPU binding of a launcher step (issue 15 item 1).

A launcher (torchrun, ft) runs as ONE task per node and spawns the ranks itself. With
``gpus_per_task`` the allocation binds GPUs per task and the step would inherit
``SLURM_GPUS_PER_TASK=1``: torchrun's eight workers would share the one GPU Slurm gave the
launcher. The real test cluster has fake GPUs (gres ``gpu:8`` per node, ``File=`` device files
made by tests/fixtures/slurm/start.sh), so the gres plugin really binds them and sets
``CUDA_VISIBLE_DEVICES`` / ``SLURM_STEP_GPUS`` / ``SLURM_GPUS_ON_NODE`` as on a GPU cluster;
the jobs below run real torchrun and print what its workers see.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from nemorun.lower import compile_job
from nemorun.plan import render_job
from nemorun.submitters import slurm as submitter
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import PINNED_SITE, compose_config
from tests.test_slurm_cluster import launch, terminal, wait_until

HAS_TORCH = importlib.util.find_spec("torch") is not None
# single quotes: the node's shell expands these, inside each worker torchrun starts
SHOW = "task.inline='echo seen node=$SLURM_NODEID cvd=$CUDA_VISIBLE_DEVICES step=$SLURM_STEP_GPUS on_node=$SLURM_GPUS_ON_NODE'"


def _step_options(*overrides: str) -> list[str]:
    cfg = compose_config(["executor=slurm", "task=hello", *overrides])
    text = render_job(compile_job(cfg, PINNED_SITE)).artifacts["sbatch.sh"]
    step = text.split("\nsrun \\\n", 1)[1]
    return [line.strip().rstrip(" \\") for line in step.splitlines() if line.strip().startswith("--")]


@pytest.mark.parametrize("overrides, expected", [
    (["executor.gpus_per_task=1", "executor.ntasks_per_node=8", "launcher=torchrun"], "--gpus-per-node=8"),
    (["executor.gpus_per_task=2", "executor.ntasks_per_node=4", "launcher=ft"], "--gpus-per-node=8"),
    # both given: the node's count is what sbatch allocated per node
    (["executor.gpus_per_task=1", "executor.gpus_per_node=4", "executor.ntasks_per_node=4", "launcher=torchrun"], "--gpus-per-node=4"),
])  # fmt: skip
def test_launcher_step_takes_the_nodes_gpus(overrides: list[str], expected: str) -> None:
    assert expected in _step_options("executor.nodes=2", *overrides)


@pytest.mark.parametrize("overrides", [
    ["executor.gpus_per_node=8", "launcher=torchrun"],  # inherited per-node binding is right
    ["executor.gpus_per_task=1", "executor.ntasks_per_node=8"],  # no launcher: one GPU per task is right
])  # fmt: skip
def test_step_keeps_the_inherited_binding(overrides: list[str]) -> None:
    assert not any(o.startswith("--gpus") for o in _step_options(*overrides))


def _seen(args: list[str], cli_env: dict[str, str]) -> list[dict[str, str]]:
    """What every process of the step printed: one dict per line."""
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # torchrun of this interpreter, as a module load would
    _, handle = launch(["task=hello", *args, SHOW, f"+executor.env_vars.PATH={path}"], cli_env)
    status = wait_until(handle, terminal, timeout=180)
    log = "".join(submitter.logs(handle))
    assert (status.state.value, status.exit_code) == ("SUCCEEDED", 0), log + Path(handle.data["stderr"]).read_text()[-3000:]
    return sorted((dict(re.findall(r"(\w+)=(\S*)", line)) for line in log.splitlines() if line.startswith("seen ")),
                  key=lambda d: sorted(d.items()))


@pytest.mark.slurm
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install torch==2.13.0)")
def test_torchrun_with_gpus_per_task_sees_all_node_gpus(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    """2 nodes x gpus_per_task=1 x 4 tasks: each node's torchrun and its 2 workers see 4 GPUs
    (before the fix: ``cvd=0``, one GPU for all workers)."""
    seen = _seen(["executor.nodes=2", "executor.ntasks_per_node=4", "executor.gpus_per_task=1",
                  "launcher=torchrun", "launcher.nproc_per_node=2"], cli_env)  # fmt: skip
    assert len(seen) == 4, seen
    assert sorted(s["node"] for s in seen) == ["0", "0", "1", "1"]
    assert all((s["cvd"], s["step"], s["on_node"]) == ("0,1,2,3", "0,1,2,3", "4") for s in seen), seen


@pytest.mark.slurm
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install torch==2.13.0)")
def test_torchrun_with_gpus_per_node_sees_all_node_gpus(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    seen = _seen(["executor.ntasks_per_node=4", "executor.gpus_per_node=4", "launcher=torchrun",
                  "launcher.nproc_per_node=2"], cli_env)  # fmt: skip
    assert len(seen) == 2 and all((s["cvd"], s["step"], s["on_node"]) == ("0,1,2,3", "0,1,2,3", "4") for s in seen), seen


@pytest.mark.slurm
def test_no_launcher_keeps_one_gpu_per_task(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    """Without a launcher Slurm starts the ranks: each of the 4 tasks gets its own GPU."""
    seen = _seen(["executor.ntasks_per_node=4", "executor.gpus_per_task=1"], cli_env)
    assert len(seen) == 4, seen
    assert sorted(s["cvd"] for s in seen) == ["0", "1", "2", "3"] and all(s["cvd"] == s["step"] for s in seen), seen
