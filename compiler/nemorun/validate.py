"""Checks every artifact passes before it leaves this machine.

Shell scripts go through ``bash -n`` (syntax); backend-specific checks live in each target
module's ``validate``. A failure is an :class:`~nemorun.errors.ArtifactError` naming the artifact.
"""
from __future__ import annotations

import contextlib
import subprocess
from typing import Callable, Iterator, Optional

from nemorun.errors import ArtifactError, one_line


# Set while a sweep validates many scripts: checks are queued and run in ONE bash process
# (a fork + exec of ``bash -n`` costs ~15 ms, i.e. minutes for a 10,000-job sweep).
_deferred: Optional[list[tuple[str, str, str]]] = None
_label = ""

# Each script is parsed (not run) as the body of a function inside its own ``eval``: a syntax
# error ends that eval only, so one bad script cannot bleed into the next.
_BATCH_CHECK = r"""
i=0
while IFS= read -r -d '' s; do
  if ! eval "__nemorun_syntax_check() {
$s
:
}" 2>/dev/null; then printf '%s\n' "$i"; fi
  i=$((i+1))
done
"""


@contextlib.contextmanager
def batched_shell_checks() -> Iterator[Callable[[str], None]]:
    """Queue :func:`check_shell_syntax` calls; check them all at the end in one process.

    Yields a function that sets the label (e.g. the job name) attached to later checks; a
    failure is re-checked with ``bash -n`` alone so its message is the usual one.
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
    payload = "".join(text + "\0" for _, _, text in queued)
    proc = subprocess.run(["bash", "-c", _BATCH_CHECK], input=payload, capture_output=True, text=True)
    for index in proc.stdout.split():
        label, name, text = queued[int(index)]
        try:
            check_shell_syntax(name, text)
        except ArtifactError as exc:
            raise ArtifactError(f"{label}: {exc}" if label else str(exc)) from None


def check_shell_syntax(name: str, text: str) -> None:
    if _deferred is not None:
        _deferred.append((_label, name, text))
        return
    proc = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ArtifactError(f"{name} is not valid bash: {one_line(proc.stderr)}")


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
