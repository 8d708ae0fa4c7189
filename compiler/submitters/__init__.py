"""One module per backend that applies rendered artifacts and answers for the jobs it started.

Every module offers the same four functions (no base class to stub):

- ``submit(rendered, job) -> Handle``: send exactly the rendered artifacts; raise
  :class:`~nemorun.errors.SubmitError` with the backend's own message when refused.
- ``status(handles) -> dict[handle.id, JobStatus]``: one call for many jobs where the backend
  allows (one ``squeue`` for all Slurm jobs).
- ``logs(handle, follow=False) -> Iterator[str]``: the job's output, line by line.
- ``cancel(handle) -> None``: idempotent.

SDKs are imported inside these functions, never at module import.
"""
from __future__ import annotations

import importlib
from types import ModuleType

SUBMITTER_MODULES: dict[str, str] = {
    "local": "nemorun.submitters.local",
    "slurm": "nemorun.submitters.slurm",
    "docker": "nemorun.submitters.docker",
    "kubeflow": "nemorun.submitters.kubeflow",
    "skypilot": "nemorun.submitters.skypilot",
    "dgxcloud": "nemorun.submitters.dgxcloud",
    "lepton": "nemorun.submitters.lepton",
}


def submitter_module(backend: str) -> ModuleType:
    return importlib.import_module(SUBMITTER_MODULES[backend])
