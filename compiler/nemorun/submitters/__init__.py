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
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:
    from nemorun.states import Handle

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


def follow(handle: "Handle") -> "Iterator[tuple[str, str]]":
    """``(stream, line)`` pairs until the job ends, stream being ``stdout`` or ``stderr``.

    Backends with a ``stream(handle)`` hook keep the two apart; for the others every line of
    ``logs(handle, follow=True)`` is reported as stdout.
    """
    module = submitter_module(handle.backend)
    if hasattr(module, "stream"):
        return module.stream(handle)
    return (("stdout", line) for line in module.logs(handle, follow=True))


def echo(pairs: "Iterable[tuple[str, str]]") -> None:
    """Write followed lines to our own stdout/stderr as they come (``wait=true``, ``exp logs -f``)."""
    import sys

    for stream, line in pairs:
        target = sys.stderr if stream == "stderr" else sys.stdout
        target.write(line)
        target.flush()
