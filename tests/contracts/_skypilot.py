"""SkyPilot task YAML (skypilot 0.14.1 schemas, dumped from sky/utils/schemas.py).

Mirrors what SkyPilot does without importing it (457 MB):
  * top-level keys whose value is None are dropped first (Task.from_yaml_config);
  * Draft7Validator extended with the custom keywords `case_insensitive_enum` and
    `case_sensitive_enum` (sky/utils/validator.py) -- used for all three schemas;
  * the task against task.schema.json (already `additionalProperties: false` upstream), then
    `resources` against resources.schema.json (SkyPilot validates it separately, including each
    `any_of` / `ordered` alternative), then every dict value of `file_mounts` (a storage mount)
    against storage.schema.json;
  * Task.from_yaml_config also rejects `envs`/`secrets` values that are None
    ("Environment variable 'X' is None"): reported here too.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema

from ._common import load_json, schema_errors


def _case_insensitive_enum(validator, enums, instance, schema):
    del validator, schema
    if not isinstance(instance, str):
        return  # left to the `type` keyword
    if instance.lower() not in [str(e).lower() for e in enums]:
        yield jsonschema.ValidationError(f"{instance!r} is not one of {enums!r}")


def _case_sensitive_enum(validator, enums, instance, schema):
    del validator, schema
    if not isinstance(instance, str):
        return
    if instance not in enums:
        yield jsonschema.ValidationError(f"{instance!r} is not one of {enums!r}")


_SkyValidator = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    validators={"case_insensitive_enum": _case_insensitive_enum,
                "case_sensitive_enum": _case_sensitive_enum},
)


@functools.lru_cache(maxsize=None)
def _validator(name: str):
    schema = load_json("skypilot", f"{name}.schema.json")
    schema.pop("$schema", None)  # SkyPilot uses its Draft7-based validator whatever the dump says
    return _SkyValidator(schema)


def skypilot_task_errors(task: Any) -> list[str]:
    if not isinstance(task, dict):
        return ["<root>: task YAML must be a mapping"]
    task = {k: v for k, v in task.items() if v is not None}
    errs = schema_errors(_validator("task"), task)
    res = task.get("resources")
    if isinstance(res, dict):
        errs += schema_errors(_validator("resources"), res, prefix="resources/")
    for field in ("envs", "secrets"):
        bag = task.get(field)
        if isinstance(bag, dict):
            for key, value in bag.items():
                if value is None:
                    errs.append(f"{field}/{key}: value is None (SkyPilot rejects unset "
                                f"{'environment variables' if field == 'envs' else 'secrets'}; use '' or a value)")
    mounts = task.get("file_mounts")
    if isinstance(mounts, dict):
        for dst, src in mounts.items():
            if isinstance(src, dict):
                errs += schema_errors(_validator("storage"), src, prefix=f"file_mounts[{dst}]")
    return errs
