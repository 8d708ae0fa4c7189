"""torchrun / ft_launcher on Slurm: the launcher runs once per node with the rendezvous lines.

The golden scripts run in real bash with stub ``srun`` (starts the step command once per task,
``SLURM_NODEID`` = 0..n-1, as Slurm does across nodes), ``scontrol`` and launcher executables
that record their argv, so what is checked is the command each node would really execute; the
argv is then parsed with the real option lists (torch's own parser for torchrun). Then a real
2-node x 2-process gloo job on the Slurm test cluster, over the SSH tunnel.
"""
from __future__ import annotations

import importlib.util
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from nemorun.lower import compile_job
from nemorun.plan import render_job
from nemorun.submitters import slurm as submitter
from tests.contracts import cli_flag_errors
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import PINNED_SITE, compose_config
from tests.test_slurm_cluster import launch, ssh, terminal, wait_until

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
HAS_TORCH = importlib.util.find_spec("torch") is not None

# case -> (launcher program, the task's own words at the end of the launcher command)
CASES = {
    "slurm_torchrun_2nodes": ("torchrun", [f"{PINNED_SITE.home}/experiments/ddp/{PINNED_SITE.experiment_id}/jobs/ddp/{d}" for d in ("nemorun_entry.py", "function.yaml")]),
    "slurm_ft_2nodes": ("ft_launcher", ["train.py", "--lr", "0.1", "two words"]),
    "slurm_torchrun_pyxis": ("torchrun", [f"/lustre/alice/nemorun/train/{PINNED_SITE.experiment_id}/train/{d}" for d in ("nemorun_entry.py", "function.yaml")]),
}

SRUN_STUB = """\
ntasks=1
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do
  case "$1" in --ntasks=*) ntasks=${1#--ntasks=} ;; esac
  printf '%s\\n' "$1" >> "$OUT/srun.opts"
  shift
done
for ((i = 0; i < ntasks; i++)); do SLURM_NODEID=$i "$@" || exit $?; done
"""
SCONTROL_STUB = """\
case "$*" in
  "show hostnames node[001-002]") printf 'node001\\nnode002\\n' ;;
  "-o show node node001") [ -n "$NODE_ADDR" ] || { echo "Node node001 not found" >&2; exit 1; }
    echo "NodeName=node001 Arch=x86_64 CoresPerSocket=4 NodeAddr=$NODE_ADDR NodeHostName=node001 Version=24.11" ;;
  *) echo "unexpected scontrol $*" >&2; exit 9 ;;
esac
"""
LAUNCHER_STUB = "printf '%s\\0' \"$@\" > \"$OUT/launcher.$SLURM_NODEID\"\n"


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\nset -euo pipefail\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run_script(script: str, tmp_path: Path, node_addr: str) -> tuple[list[str], dict[int, list[str]]]:
    """(srun options, {node id: launcher argv}) from running the script with the stubs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "srun", SRUN_STUB)
    _stub(bin_dir, "scontrol", SCONTROL_STUB)
    for program in ("torchrun", "ft_launcher"):
        _stub(bin_dir, program, LAUNCHER_STUB)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "OUT": str(tmp_path), "NODE_ADDR": node_addr,
           "SLURM_JOB_NODELIST": "node[001-002]", "SLURM_JOB_ID": "4242"}  # fmt: skip
    r = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    opts = (tmp_path / "srun.opts").read_text().split()
    argvs = {int(p.suffix[1:]): p.read_bytes().decode().split("\0")[:-1] for p in tmp_path.glob("launcher.*")}
    return opts, argvs


@pytest.mark.parametrize("node_addr", ["10.1.2.3", ""], ids=["node-addr", "name-fallback"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_launcher_runs_once_per_node_with_rendezvous(case: str, node_addr: str, tmp_path: Path) -> None:
    program, task_words = CASES[case]
    opts, argvs = _run_script((GOLDEN / case / "sbatch.sh").read_text(), tmp_path, node_addr)
    assert {"--nodes=2", "--ntasks=2", "--ntasks-per-node=1"} <= set(opts)
    assert sorted(argvs) == [0, 1], "the launcher must start exactly once on each of the 2 nodes"
    for node, args in argvs.items():
        assert not cli_flag_errors(args, program), cli_flag_errors(args, program)
        assert args[-len(task_words):] == task_words
        value = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}
        assert value["--rdzv-endpoint"] == f"{node_addr or 'node001'}:29500"
        assert (value["--node-rank"], value["--nnodes"], value["--rdzv-id"]) == (str(node), "2", "4242")
        if program == "torchrun" and HAS_TORCH:
            from torch.distributed.run import get_args_parser

            ns = get_args_parser().parse_args(args)
            assert (ns.nnodes, ns.node_rank, ns.rdzv_backend) == ("2", node, "c10d")


def test_single_node_launcher_is_standalone_and_needs_no_shell() -> None:
    cfg = compose_config(["executor=slurm", "task=ddp", "launcher=torchrun", "launcher.nproc_per_node=2", "executor.ntasks_per_node=4"])
    text = render_job(compile_job(cfg, PINNED_SITE)).artifacts["sbatch.sh"]
    assert "head_node" not in text and "bash -c" not in text
    assert "  --ntasks=1 \\\n  --ntasks-per-node=1 \\\n" in text
    assert "  torchrun --standalone --nnodes 1 --nproc-per-node 2 /home/user/.run/experiments/ddp/" in text


def test_launcher_none_keeps_the_allocation_tasks() -> None:
    cfg = compose_config(["executor=slurm", "task=hello", "executor.nodes=2", "executor.ntasks_per_node=4"])
    text = render_job(compile_job(cfg, PINNED_SITE)).artifacts["sbatch.sh"]
    assert "--ntasks" not in text.split("# command", 1)[1] and "head_node" not in text


@pytest.mark.slurm
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (pip install torch==2.13.0)")
def test_two_node_torchrun_gloo_job(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    """2 nodes x 2 ranks: every rank sees world_size=4 and the all_reduce sums 0+1+2+3. The
    fixture's nodes are named gpu01.. but all live at 127.0.0.1 (names that do not resolve): the
    rendezvous works only through the NodeAddr lookup. ``python``/``torchrun`` on the node are
    those of this interpreter (executor.env_vars.PATH), as a module load would do on a cluster."""
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    args = ["task=ddp", "executor.nodes=2", "launcher=torchrun", "launcher.nproc_per_node=2",
            f"+executor.env_vars.PATH={path}", *ssh(slurm_cluster)]  # fmt: skip
    _, handle = launch(args, cli_env)
    status = wait_until(handle, terminal, timeout=300)
    log = "".join(submitter.logs(handle))
    assert (status.state.value, status.exit_code) == ("SUCCEEDED", 0), log + "".join(
        Path(handle.data["stderr"]).read_text().splitlines(True)[-30:])
    ranks = sorted(re.findall(r"^rank=(\d+) world_size=(\d+) local_rank=(\d+) rank_sum=(\d+)", log, flags=re.M))
    assert [r[0] for r in ranks] == ["0", "1", "2", "3"], log
    assert all(r[1] == "4" and r[3] == "6" for r in ranks), log
    assert sorted(r[2] for r in ranks) == ["0", "0", "1", "1"], "two launchers with two workers each"
    shown = subprocess.run(["scontrol", "show", "job", handle.id], capture_output=True, text=True, env=os.environ).stdout
    assert re.search(r"\bNumNodes=2\b", shown), shown
