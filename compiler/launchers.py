"""Launchers: how a task's command is started on each node (``launcher=none|torchrun|ft``).

Every target asks this module for the final command with ``wrap(job, argv, form)``; the *form*
says where it runs, because a launcher needs different rendezvous facts on each backend
(Slurm: first host of ``$SLURM_JOB_NODELIST`` and ``$SLURM_NODEID``; Kubernetes/Lepton: env vars
the platform sets; local: standalone). All per-backend launcher forms live here, in one place.

Returned argv elements that the shell must expand (``$SLURM_NODEID``) are
:class:`nemorun.render.Raw`; the ``shjoin``/``shquote`` filters leave those unquoted and quote
everything else. Targets that pass argv to an API without a shell must wrap it in ``bash -c``.
"""
from __future__ import annotations

from typing import Literal, Sequence

from nemorun.ir import Job

Form = Literal["local", "slurm", "docker", "kubernetes", "lepton", "dgxcloud", "skypilot"]


def wrap(job: Job, argv: Sequence[str], form: Form) -> list[str]:
    """The command that runs ``argv`` (the task's own command) under ``job.launcher``."""
    if job.launcher.kind == "none":
        return list(argv)
    raise NotImplementedError(f"launcher '{job.launcher.kind}' has no '{form}' form yet")
