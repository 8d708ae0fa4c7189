"""Offline, strict validators for the artifacts nemorun renders, against pinned upstream contracts.

Every `*_errors` function returns a list of human-readable error strings (empty = valid);
`assert_no_errors(errors, what)` / the `assert_valid_*` helpers raise AssertionError listing them.
Strict mode everywhere: keys the upstream schema does not define are errors (real services
mostly drop them silently).  Data files live next to this module, one folder per target, each
with a PROVENANCE.md; nothing here reads outside this package or touches the network.

  trainjob_errors(doc, version="v2.2+"|"v2.1")  Kubeflow Trainer TrainJob CRD + CEL + ObjectMeta
  configmap_errors(doc)                          core/v1 ConfigMap (apiserver rules)
  runai_errors(body, schema_name)                Run:ai 2.24 OpenAPI components.schemas[...]
  runai_request_errors(method, path, body)       Run:ai request -> operation -> body schema
  lepton_job_errors(body)                        DGX Cloud Lepton job (leptonai 0.47.1)
  skypilot_task_errors(task)                     SkyPilot 0.14.1 task YAML
  docker_create_errors(run_kwargs)               docker-py containers.run kwargs -> Engine API v1.45
  docker_create_body(run_kwargs)                 the /containers/create body docker-py would send
  cli_flag_errors(argv, program)                 sbatch / srun / torchrun / ft_launcher option names
  sbatch_header_flag_errors(script_text)         #SBATCH header option names
  known_flags(program)                           exact option names of a program
"""

from __future__ import annotations

from ._cli import PROGRAMS, cli_flag_errors, known_flags, option_arity, sbatch_header_flag_errors
from ._common import assert_no_errors
from ._docker import docker_body_errors, docker_create_body, docker_create_errors, docker_create_request
from ._kube import configmap_errors, object_meta_errors, trainjob_errors
from ._lepton import lepton_job_errors
from ._runai import runai_errors, runai_operation, runai_request_errors
from ._skypilot import skypilot_task_errors

__all__ = [
    "PROGRAMS",
    "assert_no_errors",
    "assert_valid_cli",
    "assert_valid_configmap",
    "assert_valid_docker_create",
    "assert_valid_lepton_job",
    "assert_valid_runai",
    "assert_valid_runai_request",
    "assert_valid_sbatch_header",
    "assert_valid_skypilot_task",
    "assert_valid_trainjob",
    "cli_flag_errors",
    "configmap_errors",
    "docker_body_errors",
    "docker_create_body",
    "docker_create_errors",
    "docker_create_request",
    "known_flags",
    "lepton_job_errors",
    "object_meta_errors",
    "option_arity",
    "runai_errors",
    "runai_operation",
    "runai_request_errors",
    "sbatch_header_flag_errors",
    "skypilot_task_errors",
    "trainjob_errors",
]


def assert_valid_trainjob(doc: dict, version: str = "v2.2+") -> None:
    assert_no_errors(trainjob_errors(doc, version), f"TrainJob ({version})")


def assert_valid_configmap(doc: dict) -> None:
    assert_no_errors(configmap_errors(doc), "ConfigMap")


def assert_valid_runai(body: dict, schema_name: str) -> None:
    assert_no_errors(runai_errors(body, schema_name), f"Run:ai {schema_name}")


def assert_valid_runai_request(method: str, path: str, body=None) -> None:
    assert_no_errors(runai_request_errors(method, path, body), f"Run:ai {method} {path}")


def assert_valid_lepton_job(body: dict) -> None:
    assert_no_errors(lepton_job_errors(body), "Lepton job")


def assert_valid_skypilot_task(task: dict) -> None:
    assert_no_errors(skypilot_task_errors(task), "SkyPilot task")


def assert_valid_docker_create(run_kwargs: dict) -> None:
    assert_no_errors(docker_create_errors(run_kwargs), "docker containers.run kwargs")


def assert_valid_cli(argv: list[str], program: str) -> None:
    assert_no_errors(cli_flag_errors(argv, program), f"{program} command line")


def assert_valid_sbatch_header(script_text: str) -> None:
    assert_no_errors(sbatch_header_flag_errors(script_text), "sbatch script header")
