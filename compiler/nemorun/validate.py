"""Checks every artifact passes before it leaves this machine.

Shell scripts go through ``bash -n`` (syntax); backend-specific checks live in each target
module's ``validate``. A failure is an :class:`~nemorun.errors.ArtifactError` naming the artifact.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from nemorun.errors import ArtifactError, one_line


# Set while a sweep validates many scripts: checks are queued and run together at the end
# (a fork + exec of ``bash -n`` from Python costs ~15 ms, i.e. minutes for a 10,000-job sweep).
_deferred: Optional[list[tuple[str, str, str]]] = None
_label = ""

# One ``bash -n`` per file, looped inside one shell per chunk (~2 ms a script). Never ``eval``:
# ANY wrapper around a script's text (a function body, a subshell) can be closed by that text and
# the rest would run here. ``bash -n a b`` checks only ``a``, hence the loop.
_CHECK_FILES = r"""for f; do bash -n "$f" 2>"$f.err" || printf '%s\n' "$f"; done"""
# below this many scripts per chunk the extra processes cost more than they save
_CHUNK_MIN = 64


@contextlib.contextmanager
def batched_shell_checks() -> Iterator[Callable[[str], None]]:
    """Queue :func:`check_shell_syntax` calls; check them all at the end.

    Yields a function that sets the label (e.g. the job name) attached to later checks; the first
    failing script (in queue order) raises, labelled.
    """
    global _deferred, _label
    if _deferred is not None:
        yield lambda label: None
        return
    _deferred, _label = [], ""

    def set_label(label: str) -> None:
        global _label
        _label = label

    try:
        yield set_label
        queued = _deferred
    finally:
        _deferred, _label = None, ""
    if not queued:
        return
    failures = _syntax_errors([text for _, _, text in queued])
    if failures:
        index = min(failures)
        label, name, _ = queued[index]
        message = f"{name} is not valid bash: {failures[index]}"
        raise ArtifactError(f"{label}: {message}" if label else message)


def check_shell_syntax(name: str, text: str) -> None:
    """Parse (never run) ``text`` as bash; the same check as a batch of one."""
    if _deferred is not None:
        _deferred.append((_label, name, text))
        return
    failures = _syntax_errors([text])
    if failures:
        raise ArtifactError(f"{name} is not valid bash: {failures[0]}")


def _syntax_errors(scripts: Sequence[str]) -> dict[int, str]:
    """Index -> bash's one-line complaint, for each script that does not parse.

    Each script is written to its own file and checked by ``bash -n`` alone, so nothing in one
    script can hide an error in another or get executed.
    """
    with tempfile.TemporaryDirectory(prefix="nemorun-bash-n-") as tmp:
        names = [str(i) for i in range(len(scripts))]
        for file_name, text in zip(names, scripts):
            Path(tmp, file_name).write_bytes(text.encode("utf-8", "surrogateescape"))
        jobs = max(1, min(os.cpu_count() or 1, len(names) // _CHUNK_MIN))
        procs = [
            subprocess.Popen(["bash", "-c", _CHECK_FILES, "bash", *names[i::jobs]], cwd=tmp,
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            for i in range(jobs)
        ]
        failed: list[str] = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise ArtifactError(f"bash could not check the scripts' syntax (exit {proc.returncode})")
            failed += out.split()
        return {int(f): _message(Path(tmp, f + ".err").read_text(errors="replace"), f) for f in failed}


def _message(stderr: str, file_name: str) -> str:
    """bash names the file it read (``0: line 3: ...``): say ``line 3: ...`` instead."""
    lines = [line[len(file_name) + 2:] if line.startswith(file_name + ": ") else line for line in stderr.splitlines()]
    return one_line("\n".join(lines)) or "bash -n failed"


def parse_mapping_artifact(name: str, text: str, fmt: str) -> dict:
    """Read back a JSON or YAML artifact as the mapping it must be, or fail naming it.

    Every structured target validates by reading its own output back: what is checked is what
    is sent, not the object it was rendered from.
    """
    import json

    import yaml

    try:
        value = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ArtifactError(f"{name} is not valid {fmt.upper()}: {one_line(str(exc))}") from exc
    if not isinstance(value, dict):
        raise ArtifactError(f"{name} is not a {fmt.upper()} mapping")
    return value
