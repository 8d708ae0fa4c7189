"""Launchers: how a task's command is started on each node (``launcher=none|torchrun|ft``).

Every target asks this module for the final command with ``wrap(job, argv, form)``; the *form*
says where it runs, because a launcher needs different rendezvous facts on each backend. All
per-backend launcher forms live here, in one place:

==========  ===================================================================================
form        rendezvous (multi-node; a single node always uses ``--standalone``)
==========  ===================================================================================
local       single node only: ``--standalone --nnodes 1 --nproc-per-node N``
docker      as local (one container)
slurm       c10d store on the first host of ``$SLURM_JOB_NODELIST``, ``--node-rank $SLURM_NODEID``
kubernetes  the Kubeflow Trainer torch runtime's ``PET_MASTER_ADDR/PORT``, ``PET_NODE_RANK``
dgxcloud    Run:ai distributed PyTorch (training-operator): ``PET_*``, else ``MASTER_ADDR/PORT``, ``RANK``
lepton      ``MASTER_ADDR/PORT``, ``NODE_RANK`` if set, else derived from ``LEPTON_JOB_*``
            (what Lepton's ``lepton_env_to_pytorch.sh`` does, without downloading it at run time)
skypilot    first line of ``$SKYPILOT_NODE_IPS``, ``$SKYPILOT_NODE_RANK``
==========  ===================================================================================

Multi-node forms need shell variables (``head_node``, ...) computed on the node before the
command: a target emits :func:`setup_lines` (exported, so an ``srun bash -c`` step sees them) and
must run the command through a shell on each node. Returned argv elements that the shell must
expand are :class:`nemorun.render.Raw`; ``shjoin``/``shquote`` leave those unquoted.
"""
from __future__ import annotations

import difflib
from typing import Any, Literal, Mapping, Sequence

from nemorun import launcher_flags as flags
from nemorun.errors import ConfigError
from nemorun.ir import Job
from nemorun.render import Raw

Form = Literal["local", "slurm", "docker", "kubernetes", "lepton", "dgxcloud", "skypilot"]
FORMS: tuple[str, ...] = ("local", "slurm", "docker", "kubernetes", "lepton", "dgxcloud", "skypilot")

# Options nemorun sets itself; extra_args may not repeat them (argparse would silently take the last).
_MANAGED = frozenset({
    "--nnodes", "--nproc-per-node", "--standalone", "--rdzv-backend", "--rdzv-endpoint", "--rdzv-id",
    "--node-rank", "--master-addr", "--master-port", "-m", "--module", "--no-python", "--run-path",
    "--max-restarts", "--monitor-interval", "--log-dir", "--ft-cfg-path", "--ft-workload-check-interval",
    "--ft-initial-rank-heartbeat-timeout", "--ft-rank-heartbeat-timeout", "--ft-rank-termination-signal",
    "--ft-log-level", "--ft-ignore-missing-cfg",
})

# Shell lines that define head_node / head_port / node_rank from what each platform provides.
_ENV_SETUP: Mapping[str, tuple[str, str, str]] = {
    "kubernetes": ('"${PET_MASTER_ADDR:-localhost}"', '"${PET_MASTER_PORT:-%(port)s}"', '"${PET_NODE_RANK:-0}"'),
    "dgxcloud": (
        '"${PET_MASTER_ADDR:-${MASTER_ADDR:-localhost}}"',
        '"${PET_MASTER_PORT:-${MASTER_PORT:-%(port)s}}"',
        '"${PET_NODE_RANK:-${RANK:-0}}"',
    ),
    "lepton": (
        '"${MASTER_ADDR:-${LEPTON_JOB_SERVICE_PREFIX:-$LEPTON_JOB_NAME}-0.${LEPTON_SUBDOMAIN:-$LEPTON_JOB_NAME-job-svc}}"',
        '"${MASTER_PORT:-%(port)s}"',
        '"${NODE_RANK:-${LEPTON_JOB_WORKER_INDEX:-0}}"',
    ),
    "skypilot": ('"$(printf \'%%s\\n\' "$SKYPILOT_NODE_IPS" | sed -n 1p)"', "%(port)s", '"${SKYPILOT_NODE_RANK:-0}"'),
}
# Every form takes a first line with `sed -n 1p`, never `head -n1`: head exits after one line,
# the writer may then die of SIGPIPE, and under `set -o pipefail` that exit 141 ends the script
# (a race that a long node list turns into a certainty; tests/test_launcher_pipefail.py)
SLURM_HEAD_NODE = 'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)'
# The rendezvous endpoint must resolve on every node. A node NAME need not (several slurmd on one
# host, or names only slurm.conf knows): use the address slurmctld reaches the node at (NodeAddr,
# which defaults to the name on ordinary clusters), falling back to the name.
SLURM_HEAD_ADDR = (
    "head_addr=$(scontrol -o show node \"$head_node\" 2>/dev/null | sed -n 's/.* NodeAddr=\\([^ ]*\\).*/\\1/p') || head_addr=",
    'head_node=${head_addr:-$head_node}',
)

_FT_OPTIONS = (
    ("cfg_path", "--ft-cfg-path"),
    ("workload_check_interval", "--ft-workload-check-interval"),
    ("initial_rank_heartbeat_timeout", "--ft-initial-rank-heartbeat-timeout"),
    ("rank_heartbeat_timeout", "--ft-rank-heartbeat-timeout"),
    ("rank_termination_signal", "--ft-rank-termination-signal"),
    ("log_level", "--ft-log-level"),
)


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise ValueError(f"unknown launcher form {form!r}; known: {', '.join(FORMS)}")


def _multi_node(job: Job, form: str) -> bool:
    if job.resources.nodes <= 1:
        return False
    if form in ("local", "docker"):
        raise ConfigError(f"launcher={job.launcher.kind} on executor {job.target} runs on one node, but {job.resources.nodes} nodes were asked for")
    return True


def setup_lines(job: Job, form: Form) -> list[str]:
    """Shell lines a target must emit before the wrapped command (empty when none are needed)."""
    _check_form(form)
    if job.launcher.kind == "none" or not _multi_node(job, form):
        return []
    if form == "slurm":
        return [SLURM_HEAD_NODE, *SLURM_HEAD_ADDR, "export head_node"]
    addr, port, rank = (v % {"port": int(job.launcher.options.get("rdzv_port") or 29500)} for v in _ENV_SETUP[form])
    return [f"head_node={addr}", f"head_port={port}", f"node_rank={rank}", "export head_node head_port node_rank"]


def _option_words(opts: Mapping[str, Any], names: Sequence[tuple[str, str]]) -> list[str]:
    words: list[str] = []
    for key, flag in names:
        value = opts.get(key)
        if value is not None:
            words += [flag, str(value)]
    return words


def nproc_per_node(job: Job) -> int:
    n = job.launcher.options.get("nproc_per_node")
    if n is not None:
        return int(n)
    return job.resources.gpus_per_node or job.resources.tasks_per_node


def slurm_step_gpus_per_node(job: Job) -> int | None:
    """GPUs the ONE launcher task per node must ask its Slurm step for, or None to inherit.

    With ``gpus_per_task`` the allocation binds GPUs per task (``--gpus-per-task=1
    --ntasks-per-node=8``) and every step inherits ``SLURM_GPUS_PER_TASK``: a launcher step of
    one task per node would get ONE GPU (``CUDA_VISIBLE_DEVICES=0``) while torchrun starts eight
    workers. The step must instead take the node's whole share. ``gpus_per_node`` alone needs
    nothing: the step inherits the per-node binding (tests/test_slurm_gpu_binding.py shows both
    on the real cluster)."""
    res = job.resources
    if job.launcher.kind == "none" or not res.gpus_per_task:
        return None
    return res.gpus_per_node or res.gpus_per_task * res.tasks_per_node


def launcher_options(job: Job, form: Form) -> list[str]:
    """The launcher's own options (between the program and the script), for ``form``."""
    _check_form(form)
    opts = job.launcher.options
    kind = job.launcher.kind
    check_extra_args(kind, [str(a) for a in opts.get("extra_args") or ()])
    nproc = str(nproc_per_node(job))
    if not _multi_node(job, form):
        words: list[str] = ["--standalone", "--nnodes", "1", "--nproc-per-node", nproc]
    else:
        port = int(opts.get("rdzv_port") or 29500)
        endpoint, rank = (
            (Raw(f"$head_node:{port}"), Raw("$SLURM_NODEID")) if form == "slurm" else (Raw("$head_node:$head_port"), Raw("$node_rank"))
        )
        rdzv_id = opts.get("rdzv_id") or (Raw("$SLURM_JOB_ID") if form == "slurm" else f"{job.experiment_id}-{job.name}")
        words = [
            "--rdzv-backend", str(opts.get("rdzv_backend") or "c10d"), "--rdzv-endpoint", endpoint, "--rdzv-id", rdzv_id,
            "--nnodes", str(job.resources.nodes), "--nproc-per-node", nproc, "--node-rank", rank,
        ]  # fmt: skip
    words += _option_words(opts, (("max_restarts", "--max-restarts"), ("monitor_interval", "--monitor-interval"), ("log_dir", "--log-dir")))
    if kind == "ft":
        ft = _option_words(opts, _FT_OPTIONS)
        words += ft or ["--ft-ignore-missing-cfg"]
    return words + [str(a) for a in opts.get("extra_args") or ()]


def program(job: Job, form: Form) -> list[str]:
    """The launcher executable. Locally torchrun runs as ``<job python> -m torch.distributed.run``
    so workers use the same interpreter as the job (the ``torchrun`` on PATH may belong to another)."""
    if job.launcher.kind == "ft":
        return ["ft_launcher"]
    return [job.python, "-m", "torch.distributed.run"] if form == "local" else ["torchrun"]


def _script_words(job: Job, argv: Sequence[str]) -> list[str]:
    """``python x.py a`` -> ``x.py a``; ``python -m mod a`` -> ``-m mod a``; else ``--no-python argv``."""
    if len(argv) >= 2 and argv[0] == job.python:
        return list(argv[1:])
    return ["--no-python", *argv]


def wrap(job: Job, argv: Sequence[str], form: Form) -> list[str]:
    """The command that runs ``argv`` (the task's own command) under ``job.launcher``."""
    _check_form(form)
    kind = job.launcher.kind
    if kind == "none":
        return list(argv)
    if kind not in ("torchrun", "ft"):
        raise ConfigError(f"launcher '{kind}' is not known; known: none, torchrun, ft")
    return [*program(job, form), *launcher_options(job, form), *_script_words(job, argv)]


def check_extra_args(kind: str, args: Sequence[str]) -> None:
    """Reject options the launcher does not have, options nemorun sets, and dangling values."""
    prog, known, switches = (
        ("ft_launcher", flags.FT_LAUNCHER_FLAGS, flags.FT_LAUNCHER_SWITCHES)
        if kind == "ft"
        else ("torchrun", flags.TORCHRUN_FLAGS, flags.TORCHRUN_SWITCHES)
    )
    i = 0
    while i < len(args):
        word = args[i]
        attached = "=" in word or (not word.startswith("--") and len(word) > 2)
        name = word.split("=", 1)[0] if word.startswith("--") else word[:2]
        if not word.startswith("-") or word == "-":
            raise ConfigError(f"launcher.extra_args: {word!r} is not a {prog} option (a value must follow its option)")
        if name in flags.FT_LAUNCHER_RENAMED and kind == "ft":
            raise ConfigError(f"launcher.extra_args: {name} was removed from {prog} (nvidia-resiliency-ext >= 0.5); use {flags.FT_LAUNCHER_RENAMED[name]}")
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"launcher.extra_args: {prog} has no option {name}{hint}")
        canonical = name if len(name) == 2 else "--" + name[2:].replace("_", "-")
        if canonical in _MANAGED:
            raise ConfigError(f"launcher.extra_args: {name} is set by nemorun from the launcher and executor config; set the matching launcher.* field instead")
        if name not in switches and not attached:
            if i + 1 >= len(args):
                raise ConfigError(f"launcher.extra_args: {prog} option {name} needs a value")
            i += 1
        i += 1
