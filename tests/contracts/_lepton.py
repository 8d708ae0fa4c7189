"""DGX Cloud Lepton job body (POST /jobs), leptonai 0.47.1, strict.

Schema: LeptonJob.model_json_schema(by_alias=True) (lepton/leptonjob.schema.json), made strict by
adding `additionalProperties: false` to every object schema with `properties` -- including the
pydantic models under `$defs` -- because the SDK's pydantic models silently drop unknown keys.

Client-side rules re-implemented (not copied) from leptonai 0.47.1:
  leptonai/api/v2/job_validation.py  validate_job_create(): job name, env names, reserved mount
      paths, label keys, completions/parallelism > 0;
  leptonai/api/v2/spec_utils.py      validate_environment_variable_name();
  leptonai/config.py                 LEPTON_RESERVED_ENV_NAMES;
  leptonai/api/v2/types/job.py       ttl_seconds_after_finished / max_failure_retry /
      max_job_failure_retry >= 0 (field validator);
  leptonai/api/v2/types/deployment.py ContainerPort: port 1..65535, protocol TCP/UDP/SCTP.
"""

from __future__ import annotations

import functools
import posixpath
import re
from typing import Any

import jsonschema

from ._common import add_additional_properties_false, load_json, schema_errors

MAX_JOB_NAME_LENGTH = 36
MAX_LABEL_KEY_LENGTH = 63
_JOB_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")

# job_validation.LEPTON_RESERVED_MOUNT_PATHS (exact paths after posix normalisation; descendants allowed)
LEPTON_RESERVED_MOUNT_PATHS = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/media", "/opt", "/proc", "/run",
    "/sbin", "/srv", "/sys", "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/var",
    "/sys/fs/cgroup", "/sys/kernel/security", "/proc/sys", "/proc/bus",
})
# leptonai.config.LEPTON_RESERVED_ENV_NAMES
LEPTON_RESERVED_ENV_NAMES = frozenset({
    "LEPTON_WORKSPACE_ID", "LEPTON_DEPLOYMENT_NAME", "LEPTON_JOB_NAME",
    "LEPTON_RESOURCE_ACCELERATOR_TYPE", "LEPTON_WORKSPACE_ORIGIN_URL",
})


@functools.lru_cache(maxsize=1)
def _validator():
    schema = add_additional_properties_false(load_json("lepton", "leptonjob.schema.json"))
    return jsonschema.Draft202012Validator(schema)


def lepton_job_name_errors(name: Any) -> list[str]:
    if not isinstance(name, str) or not name:
        return ["Job name cannot be empty."]
    if len(name) > MAX_JOB_NAME_LENGTH:
        return [f"Job name must be at most {MAX_JOB_NAME_LENGTH} characters long."]
    if not ("a" <= name[0] <= "z"):
        return ["Job name must start with a lowercase letter."]
    if not _JOB_NAME_RE.match(name):
        return ["Job name can contain only lowercase letters, digits, and hyphens."]
    if name.endswith("-"):
        return ["Job name cannot end with a hyphen."]
    if name.endswith("by-lepton"):
        return ["Job name cannot end with 'by-lepton'."]
    return []


def _env_name_errors(name: Any) -> list[str]:
    if not isinstance(name, str) or not name:
        return ["Environment variable name cannot be empty."]
    if "0" <= name[0] <= "9":
        return ["Environment variable name cannot start with a digit."]
    if not _ENV_NAME_RE.match(name):
        return ["Environment variable name can contain only letters, digits, hyphens, underscores, and periods."]
    if name in LEPTON_RESERVED_ENV_NAMES:
        return [f"{name} is a reserved environment variable name used by Lepton internally."]
    return []


def _normalize_mount_path(path: str) -> str:
    norm = posixpath.normpath(path)
    if norm.startswith("//"):  # POSIX keeps '//' ; Lepton collapses it
        norm = "/" + norm.lstrip("/")
    return norm


def _client_rule_errors(body: dict) -> list[str]:
    errs: list[str] = []
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    name = meta.get("id") if meta.get("id") is not None else (meta.get("name") or "")
    errs += [f"metadata/id: {m}" for m in lepton_job_name_errors(name)]
    for i, env in enumerate(spec.get("envs") or []):
        if isinstance(env, dict) and "name" in env:
            errs += [f"spec/envs/{i}/name: {m}" for m in _env_name_errors(env["name"])]
    for i, mount in enumerate(spec.get("mounts") or []):
        if isinstance(mount, dict) and isinstance(mount.get("mount_path"), str):
            if _normalize_mount_path(mount["mount_path"]) in LEPTON_RESERVED_MOUNT_PATHS:
                errs.append(f"spec/mounts/{i}/mount_path: Mount path {mount['mount_path']!r} is reserved "
                            "by Lepton and cannot be used.")
    labels = meta.get("labels")
    if isinstance(labels, dict):
        for key in labels:
            if not isinstance(key, str) or not key:
                errs.append("metadata/labels: Label key cannot be empty.")
            elif len(key) > MAX_LABEL_KEY_LENGTH:
                errs.append(f"metadata/labels/{key}: Label key must be at most {MAX_LABEL_KEY_LENGTH} characters long.")
            elif not _LABEL_KEY_RE.match(key):
                errs.append(f"metadata/labels/{key}: Label key must start and end with a letter or digit and "
                            "can contain only letters, digits, periods, underscores, and hyphens.")
    for field in ("completions", "parallelism"):
        v = spec.get(field)
        if v is not None and (isinstance(v, bool) or (isinstance(v, (int, float)) and v <= 0)):
            errs.append(f"spec/{field}: Job {field} must be a positive integer.")
    for field in ("ttl_seconds_after_finished", "max_failure_retry", "max_job_failure_retry"):
        v = spec.get(field)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
            errs.append(f"spec/{field}: value must be >= 0")
    container = spec.get("container") if isinstance(spec.get("container"), dict) else {}
    for i, port in enumerate(container.get("ports") or []):
        if not isinstance(port, dict):
            continue
        cp = port.get("container_port")
        if isinstance(cp, int) and not isinstance(cp, bool) and not 0 < cp <= 65535:
            errs.append(f"spec/container/ports/{i}/container_port: Port must be between 1 and 65535.")
        proto = port.get("protocol")
        if isinstance(proto, str) and proto and proto.lower() not in ("tcp", "udp", "sctp"):
            errs.append(f"spec/container/ports/{i}/protocol: Protocol must be either TCP, UDP, or SCTP.")
    return errs


def lepton_job_errors(body: Any) -> list[str]:
    """LeptonJob wire body (snake_case, `metadata.id`, mounts[].from): strict schema + client rules."""
    errs = schema_errors(_validator(), body)
    if isinstance(body, dict):
        errs += _client_rule_errors(body)
    return errs
