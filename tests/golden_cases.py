"""Every golden case in one table: case name -> Hydra overrides.

Adding a case is one line here plus ``pytest tests/test_golden.py --update-golden`` (then read
the new files under ``golden/<case>/`` before committing them). Each case renders on the pinned
site of ``tests/helpers.py``; each artifact is compared byte for byte with ``golden/<case>/<artifact>``.
"""
from __future__ import annotations

CASES: dict[str, list[str]] = {
    "local_hello": ["task=hello"],
    "local_train_function": ["task=train", "task.params.steps=5"],
    "local_script_args_env": [
        "task=hello",
        "task.inline=null",
        "task.script=scripts/run.sh",
        "task.args=[--name, 'two words', $HOME, \"it's\"]",
        "+task.env.GREETING='hello $USER'",
        "+task.env.MULTI='line1\nline2'",
        "+executor.env_vars.NCCL_DEBUG=INFO",
    ],
}
