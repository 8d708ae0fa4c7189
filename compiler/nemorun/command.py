"""The task's command line, before and after a launcher wraps it.

Kept apart from the templates so every target builds the same argv for the same task; targets
differ only in how they place it (a line in launch.sh, an srun step, a container command).
"""
from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from nemorun import entry
from nemorun.ir import Job, Task
from nemorun.render import shquote

FUNCTION_SPEC = "function.yaml"
# The node-side entry point ships WITH every function task, next to its function.yaml, so any
# image with a Python 3.9+ interpreter runs one: nemorun need not be installed where the job runs.
ENTRY_FILE = "nemorun_entry.py"
# read once at import (a render must not touch the disk); standard library only by design
ENTRY_SOURCE = Path(entry.__file__).read_text(encoding="utf-8")


def task_argv(job: Job, function_spec: str, shell: str = "bash", entry_path: Optional[str] = None) -> list[str]:
    """argv of the task itself. ``function_spec`` is where ``function.yaml`` is on the target and
    ``entry_path`` where the shipped entry point is (default: next to the spec); ``shell`` runs
    inline tasks and non-Python scripts (images without bash use ``sh``)."""
    task = job.task
    if task.kind == "inline":
        return [shell, "-c", str(task.inline)]
    if task.kind == "script":
        script = str(task.script)
        runner = job.python if script.endswith(".py") else shell
        return [runner, script, *task.args]
    return [job.python, entry_path or posixpath.join(posixpath.dirname(function_spec), ENTRY_FILE), function_spec]


def function_spec_text(task: Task) -> str:
    """``function.yaml``: what the node-side entry point imports and calls.

    Written as JSON, which is also YAML (1.2 flow style), so the entry point reads it with the
    standard library alone: the node needs nemorun's entry module, not PyYAML.
    """
    spec: Mapping[str, Any] = {"target": task.target, "params": dict(task.params)}
    return json.dumps(spec, indent=2, sort_keys=True) + "\n"


# A job array's function tasks, one JSON object per line (row i = array task i): JSON escapes every
# newline and, with ensure_ascii, every other line break, so a row is always exactly one line.
TASK_TABLE = "tasks.jsonl"


def task_table_text(tasks: Sequence[Task]) -> str:
    """``tasks.jsonl``: what ``python nemorun_entry.py tasks.jsonl <row>`` reads on the node."""
    return "".join(json.dumps({"target": t.target, "params": dict(t.params)}, sort_keys=True, separators=(",", ":")) + "\n"
                   for t in tasks)


def function_artifacts(job: Job) -> dict[str, str]:
    """Extra artifacts a function task ships next to the target's main artifact."""
    if job.task.kind != "function":
        return {}
    return {FUNCTION_SPEC: function_spec_text(job.task), ENTRY_FILE: ENTRY_SOURCE}


# Where remote targets that ship no files (skypilot, lepton) write a function task's spec on the node.
REMOTE_FUNCTION_SPEC = "/tmp/nemorun-function.yaml"
REMOTE_ENTRY = posixpath.join(posixpath.dirname(REMOTE_FUNCTION_SPEC), ENTRY_FILE)


def write_entry_line(path: str = REMOTE_ENTRY) -> str:
    """A shell line that writes the entry point on the node (targets that ship no files)."""
    return f"printf '%s' {shquote(ENTRY_SOURCE)} > {shquote(path)}"


def write_function_spec_lines(task: Task, path: str = REMOTE_FUNCTION_SPEC) -> list[str]:
    """Shell lines that write ``function.yaml`` and the entry point on the node, for targets whose
    command is the only thing that reaches it (an API body, a task YAML without file mounts)."""
    return [f"printf '%s' {shquote(function_spec_text(task))} > {shquote(path)}", write_entry_line()]
