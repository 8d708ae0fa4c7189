"""Checks every artifact passes before it leaves this machine.

Shell scripts go through ``bash -n`` (syntax); backend-specific checks live in each target
module's ``validate``. A failure is an :class:`~nemorun.errors.ArtifactError` naming the artifact.
"""
from __future__ import annotations

import subprocess

from nemorun.errors import ArtifactError, one_line


def check_shell_syntax(name: str, text: str) -> None:
    proc = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ArtifactError(f"{name} is not valid bash: {one_line(proc.stderr)}")
