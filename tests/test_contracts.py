"""The offline contract validators (tests/contracts) accept good artifacts and catch bad ones."""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
try:
    from tests import contracts as C

    if Path(C.__file__).resolve().parent != _HERE / "contracts":  # some other "tests" package
        raise ImportError
except ImportError:
    if str(_HERE) not in sys.path:
        sys.path.insert(0, str(_HERE))
    import contracts as C  # type: ignore[no-redef]

CONTRACTS_DIR = Path(C.__file__).resolve().parent


def _has(errors: list[str], *needles: str) -> bool:
    return any(all(n in e for n in needles) for e in errors)


# ------------------------------------------------------------------ Kubeflow TrainJob
GOOD_TRAINJOB = {
    "apiVersion": "trainer.kubeflow.org/v1alpha1",
    "kind": "TrainJob",
    "metadata": {"name": "llama-pretrain-a1b2c3", "namespace": "default"},
    "spec": {
        "runtimeRef": {"name": "torch-distributed"},
        "trainer": {
            "image": "nvcr.io/nvidia/nemo:25.04",
            "numNodes": 2,
            "numProcPerNode": 8,
            "command": ["/bin/bash", "-c", "torchrun train.py"],
            "env": [{"name": "NCCL_DEBUG", "value": "INFO"}],
            "resourcesPerNode": {
                "limits": {"nvidia.com/gpu": "8"},
                "requests": {"nvidia.com/gpu": 8, "memory": "512Gi"},
            },
        },
    },
}


def _nemo_run_style_trainjob() -> dict:
    """What NeMo-Run's KubeflowExecutor emits: Trainer v2.1 `podTemplateOverrides`."""
    doc = copy.deepcopy(GOOD_TRAINJOB)
    doc["spec"]["podTemplateOverrides"] = [{
        "targetJobs": [{"name": "node"}],
        "spec": {
            "volumes": [{"name": "workspace", "persistentVolumeClaim": {"claimName": "nemo-pvc"}}],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }]
    return doc


@pytest.mark.parametrize("version", ["v2.2+", "v2.1"])
def test_trainjob_good(version):
    assert C.trainjob_errors(GOOD_TRAINJOB, version) == []
    C.assert_valid_trainjob(GOOD_TRAINJOB, version)


def test_trainjob_podtemplateoverrides_is_v21_only():
    doc = _nemo_run_style_trainjob()
    errs = C.trainjob_errors(doc)  # default: v2.2+
    assert _has(errs, "spec", "podTemplateOverrides"), errs
    assert C.trainjob_errors(doc, version="v2.1") == []
    with pytest.raises(AssertionError, match="podTemplateOverrides"):
        C.assert_valid_trainjob(doc)


RUNTIME_PATCHES_TRAINJOB = {  # kubeflow/trainer examples/yaml/02-runtime-patches.yaml (script shortened)
    "apiVersion": "trainer.kubeflow.org/v1alpha1",
    "kind": "TrainJob",
    "metadata": {"name": "runtime-patches-example"},
    "spec": {
        "runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                       "name": "torch-distributed"},
        "trainer": {
            "numNodes": 2,
            "command": ["torchrun", "--no-python", "python3", "-c", "print(1)"],
            "env": [{"name": "CUSTOM_VAR", "value": "custom-value"}, {"name": "PYTHONUNBUFFERED", "value": "1"}],
            "resourcesPerNode": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}},
        },
        "runtimePatches": [{
            "manager": "example.io/platform-team",
            "trainingRuntimeSpec": {"template": {
                "metadata": {"labels": {"team": "ml-platform"}, "annotations": {"prometheus.io/scrape": "true"}},
                "spec": {"replicatedJobs": [{"name": "node", "template": {"spec": {"template": {"spec": {
                    "serviceAccountName": "training-sa",
                    "nodeSelector": {"node-type": "training"},
                    "tolerations": [{"key": "training-workload", "operator": "Equal", "value": "true",
                                     "effect": "NoSchedule"}],
                }}}}}]},
            }},
        }],
    },
}


def test_trainjob_runtime_patches_is_v22_only():
    assert C.trainjob_errors(RUNTIME_PATCHES_TRAINJOB) == []
    assert _has(C.trainjob_errors(RUNTIME_PATCHES_TRAINJOB, "v2.1"), "runtimePatches")
    doc = copy.deepcopy(RUNTIME_PATCHES_TRAINJOB)
    doc["spec"]["runtimePatches"].append(copy.deepcopy(doc["spec"]["runtimePatches"][0]))  # same manager
    assert _has(C.trainjob_errors(doc), "spec/runtimePatches/1", "Duplicate value")


def test_trainjob_unknown_field_is_error_in_strict_mode():
    doc = copy.deepcopy(GOOD_TRAINJOB)
    doc["spec"]["trainer"]["typoField"] = 1
    doc["spec"]["runtimeRef"]["kindd"] = "x"
    errs = C.trainjob_errors(doc)
    assert _has(errs, "spec/trainer", "typoField") and _has(errs, "spec/runtimeRef", "kindd"), errs


def test_trainjob_schema_errors():
    doc = copy.deepcopy(GOOD_TRAINJOB)
    del doc["spec"]["runtimeRef"]
    doc["spec"]["trainer"]["env"][0] = {"value": "x"}
    doc["spec"]["trainer"]["numNodes"] = "2"
    doc["spec"]["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] = "eight"
    errs = C.trainjob_errors(doc)
    assert _has(errs, "'runtimeRef' is a required property")
    assert _has(errs, "spec/trainer/env/0", "'name' is a required property")
    assert _has(errs, "spec/trainer/numNodes", "not of type 'integer'")
    assert _has(errs, "spec/trainer/resourcesPerNode/limits/nvidia.com/gpu")


def test_trainjob_cel_rules():
    doc = copy.deepcopy(GOOD_TRAINJOB)
    doc["metadata"]["name"] = "Bad_Name"
    doc["spec"]["managedBy"] = "someone-else"
    doc["spec"]["trainer"]["numProcPerNode"] = 0
    doc["spec"]["initializer"] = {"model": {"storageUri": "not-a-uri"}}
    errs = C.trainjob_errors(doc)
    assert _has(errs, "RFC 1035 DNS label"), errs
    assert _has(errs, "spec/managedBy", "ManagedBy must be"), errs
    assert _has(errs, "spec/trainer/numProcPerNode", "greater than or equal to 1"), errs
    assert _has(errs, "spec/initializer/model/storageUri", "valid URI"), errs
    # v2.1 has no numProcPerNode / storageUri CEL rules, but the name rule exists there too
    errs21 = C.trainjob_errors(doc, "v2.1")
    assert _has(errs21, "RFC 1035") and not _has(errs21, "numProcPerNode")


def test_trainjob_cel_name_length():
    doc = copy.deepcopy(GOOD_TRAINJOB)
    doc["metadata"]["name"] = "a" * 64  # valid DNS subdomain, too long for the CRD's CEL rule
    assert _has(C.trainjob_errors(doc), "no more than 63 characters")


def test_trainjob_list_map_keys_unique_and_meta():
    doc = copy.deepcopy(GOOD_TRAINJOB)
    doc["spec"]["trainer"]["env"].append({"name": "NCCL_DEBUG", "value": "WARN"})
    doc["metadata"]["namespace"] = "Not_A_Label"
    doc["metadata"]["labelz"] = {}
    doc["metadata"]["labels"] = {"bad key!": "v"}
    errs = C.trainjob_errors(doc)
    assert _has(errs, "spec/trainer/env/1", "Duplicate value"), errs
    assert _has(errs, "metadata.namespace") and _has(errs, "labelz") and _has(errs, "metadata.labels"), errs


def test_trainjob_api_version_kind_and_bad_version():
    doc = dict(GOOD_TRAINJOB, apiVersion="kubeflow.org/v2", kind="PyTorchJob")
    errs = C.trainjob_errors(doc)
    assert _has(errs, "apiVersion") and _has(errs, "kind"), errs
    with pytest.raises(ValueError):
        C.trainjob_errors(GOOD_TRAINJOB, version="v9")


# ------------------------------------------------------------------ ConfigMap
GOOD_CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "llama-pretrain-files", "namespace": "default"},
    "data": {"launch.sh": "#!/bin/bash\ntorchrun train.py\n"},
}


def test_configmap_good():
    assert C.configmap_errors(GOOD_CONFIGMAP) == []
    ok = dict(GOOD_CONFIGMAP, binaryData={"blob.bin": base64.b64encode(b"\x00\x01").decode()}, immutable=True)
    assert C.configmap_errors(ok) == []
    exactly_1mib = dict(GOOD_CONFIGMAP, data={"a": "x" * 1048576})
    assert C.configmap_errors(exactly_1mib) == []


def test_configmap_bad_key_and_oversize():
    doc = copy.deepcopy(GOOD_CONFIGMAP)
    doc["data"]["bad key!"] = "x"
    doc["data"]["big"] = "x" * 1048576
    errs = C.configmap_errors(doc)
    assert _has(errs, "bad key!", "valid config key"), errs
    assert _has(errs, "Too long", "1048576"), errs


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d["metadata"].__setitem__("name", "Bad_Name"), "metadata.name"),
    (lambda d: d["metadata"].__setitem__("namespace", "a.b"), "metadata.namespace"),
    (lambda d: d.__setitem__("datum", {}), "datum"),
    (lambda d: d["metadata"].__setitem__("lables", {}), "lables"),
    (lambda d: d.__setitem__("binaryData", {"launch.sh": "AAAA"}), "duplicate of key present in binaryData"),
    (lambda d: d.__setitem__("binaryData", {"b": "not base64!"}), "base64"),
    (lambda d: d["data"].__setitem__("..x", "v"), "must not start with '..'"),
    (lambda d: d["data"].__setitem__("k" * 254, "v"), "no more than 253"),
    (lambda d: d["data"].__setitem__("n", 123), "must be a string"),
    (lambda d: d.__setitem__("kind", "Secret"), "kind"),
])
def test_configmap_rules(mutate, needle):
    doc = copy.deepcopy(GOOD_CONFIGMAP)
    mutate(doc)
    assert _has(C.configmap_errors(doc), needle), C.configmap_errors(doc)


# ------------------------------------------------------------------ Run:ai
GOOD_DISTRIBUTED = {
    "name": "llama-pretrain", "useGivenNameAsPrefix": True, "projectId": "1234",
    "clusterId": "71f69d83-ba66-4822-adf5-55ce55efd210",
    "spec": {
        "command": "/bin/bash /pvc/nemo_run/exp/job/launch_script.sh", "image": "nvcr.io/nvidia/nemo:25.04",
        "compute": {"gpuDevicesRequest": 8, "largeShmRequest": True},
        "storage": {"pvc": [{"name": "workspace", "claimName": "nemo-pvc", "path": "/pvc", "existingPvc": True}]},
        "environmentVariables": [{"name": "NCCL_DEBUG", "value": "INFO"}],
        "distributedFramework": "PyTorch", "minReplicas": 2, "maxReplicas": 2, "numWorkers": 2,
    },
}


def _single_node(body: dict) -> dict:
    body = copy.deepcopy(body)
    for key in ("distributedFramework", "minReplicas", "maxReplicas", "numWorkers"):
        del body["spec"][key]
    return body


def test_runai_good():
    assert C.runai_errors(GOOD_DISTRIBUTED, "DistributedCreationRequest") == []
    assert C.runai_errors(_single_node(GOOD_DISTRIBUTED), "TrainingCreationRequest") == []
    assert C.runai_errors(_single_node(GOOD_DISTRIBUTED), "WorkspaceCreationRequest") == []
    assert C.runai_errors({"grantType": "client_credentials", "clientID": "a", "clientSecret": "b"},
                          "TokenRequest") == []
    C.assert_valid_runai(GOOD_DISTRIBUTED, "DistributedCreationRequest")


def test_runai_bad_distributed():
    bad = copy.deepcopy(GOOD_DISTRIBUTED)
    bad.update(name="", projectId=1234, clusterId="not-a-uuid")
    bad["spec"].update(command=["python", "train.py"], distributedFramework="pytorch", numWorkers=0, imagee="x")
    bad["spec"]["compute"].update(gpuDevicesRequest=-1, gpus=8)
    errs = C.runai_errors(bad, "DistributedCreationRequest")
    for needle in (("name", "non-empty"), ("projectId", "not of type 'string'"), ("clusterId", "uuid"),
                   ("spec/command", "not of type"), ("spec/distributedFramework", "pytorch"),
                   ("spec/numWorkers", "minimum"), ("spec/compute/gpuDevicesRequest", "minimum"),
                   ("spec:", "imagee"), ("spec/compute:", "gpus")):
        assert _has(errs, *needle), (needle, errs)
    # distributed-only keys are unknown in a single-node training request (strict)
    assert _has(C.runai_errors(GOOD_DISTRIBUTED, "TrainingCreationRequest"), "numWorkers")


def test_runai_token_client_id_spelling():
    errs = C.runai_errors({"grantType": "client_credentials", "clientId": "a", "clientSecret": "b"}, "TokenRequest")
    assert _has(errs, "clientId"), errs


def test_runai_unknown_schema_name():
    with pytest.raises(ValueError):
        C.runai_errors({}, "NoSuchSchema")


@pytest.mark.parametrize("method, path, body, ok", [
    ("POST", "https://tenant.example/api/v1/token",
     {"grantType": "client_credentials", "clientID": "a", "clientSecret": "b"}, True),
    ("POST", "/token", {"grantType": "client_credentials", "clientId": "a", "clientSecret": "b"}, False),
    ("GET", "/api/v1/org-unit/projects", None, True),
    ("POST", "/api/v1/workloads/distributed", GOOD_DISTRIBUTED, True),
    ("POST", "/api/v1/workloads/trainings", _single_node(GOOD_DISTRIBUTED), True),
    ("POST", "/api/v1/workloads/workspaces", _single_node(GOOD_DISTRIBUTED), True),
    ("POST", "/api/v1/workloads/trainings", GOOD_DISTRIBUTED, False),
    ("POST", "/api/v1/workloads/distributed", None, False),
    ("GET", "/api/v1/workloads/distributed/71f69d83-ba66-4822-adf5-55ce55efd210", None, True),
    ("DELETE", "/api/v1/workloads/trainings/71f69d83-ba66-4822-adf5-55ce55efd210", None, True),
    ("POST", "/api/v1/workloads/distributed/71f69d83-ba66-4822-adf5-55ce55efd210/suspend", None, True),
    ("GET", "/api/v1/workloads/distributed/71f69d83-ba66-4822-adf5-55ce55efd210/suspend", None, False),
    ("POST", "/api/v1/workloads/nonsense", {}, False),
])
def test_runai_request_mapping(method, path, body, ok):
    errs = C.runai_request_errors(method, path, body)
    assert (errs == []) == ok, errs


def test_runai_request_get_suspend_message():
    errs = C.runai_request_errors("GET", "/api/v1/workloads/distributed/x/suspend")
    assert _has(errs, "allows POST"), errs


# ------------------------------------------------------------------ Lepton
GOOD_LEPTON = {
    "metadata": {"id": "llama-pretrain"},
    "spec": {
        "resource_shape": "gpu.8xh100-80gb", "completions": 2, "parallelism": 2,
        "affinity": {"allowed_dedicated_node_groups": ["ng-abc123"]},
        "container": {"image": "nvcr.io/nvidia/nemo:25.04",
                      "command": ["/bin/bash", "-c", "bash /shared/job/launch_script.sh"]},
        "shared_memory_size": 65536, "intra_job_communication": True,
        "envs": [{"name": "NCCL_DEBUG", "value": "INFO"},
                 {"name": "HF_TOKEN", "value_from": {"secret_name_ref": "hf-token"}}],
        "mounts": [{"from": "node-nfs:lepton-shared-fs", "path": "/", "mount_path": "/shared"}],
        "ttl_seconds_after_finished": 600,
    },
}


def test_lepton_good():
    assert C.lepton_job_errors(GOOD_LEPTON) == []
    C.assert_valid_lepton_job(GOOD_LEPTON)


def test_lepton_schema_and_strict():
    bad = copy.deepcopy(GOOD_LEPTON)
    bad["spec"]["completions"] = "two"
    bad["spec"]["resourceShape"] = "gpu.8xh100-80gb"  # camelCase typo: dropped by pydantic
    bad["spec"]["container"]["workdir"] = "/x"  # $defs model LeptonContainer
    bad["spec"]["mounts"] = [{"mount_path": "/data"}, {"from": "x", "mount_path": "/d", "readonly": True}]
    bad["spec"]["envs"] = [{"value": "x"}]
    errs = C.lepton_job_errors(bad)
    for needle in (("spec/completions", "integer"), ("spec:", "resourceShape"), ("spec/container", "workdir"),
                   ("spec/mounts/0", "'from' is a required"), ("spec/mounts/1", "readonly"),
                   ("spec/envs/0", "'name' is a required")):
        assert _has(errs, *needle), (needle, errs)


@pytest.mark.parametrize("mutate, needle", [
    (lambda b: b["metadata"].__setitem__("id", "Bad_Name"), "start with a lowercase letter"),
    (lambda b: b["metadata"].__setitem__("id", "a" * 37), "at most 36"),
    (lambda b: b["metadata"].__setitem__("id", "job-"), "end with a hyphen"),
    (lambda b: b["metadata"].__setitem__("id", "my-job-by-lepton"), "by-lepton"),
    (lambda b: b["metadata"].__setitem__("id", "job_1"), "only lowercase"),
    (lambda b: b["spec"]["mounts"][0].__setitem__("mount_path", "/usr"), "reserved"),
    (lambda b: b["spec"]["mounts"][0].__setitem__("mount_path", "/usr/local/"), "reserved"),
    (lambda b: b["spec"]["envs"].append({"name": "1BAD", "value": "x"}), "start with a digit"),
    (lambda b: b["spec"]["envs"].append({"name": "BAD NAME", "value": "x"}), "Environment variable name"),
    (lambda b: b["spec"]["envs"].append({"name": "LEPTON_JOB_NAME", "value": "x"}), "reserved"),
    (lambda b: b["spec"].__setitem__("parallelism", 0), "parallelism must be a positive"),
    (lambda b: b["spec"].__setitem__("completions", -1), "completions must be a positive"),
    (lambda b: b["spec"].__setitem__("ttl_seconds_after_finished", -1), ">= 0"),
    (lambda b: b["metadata"].__setitem__("labels", {"-bad": "x"}), "Label key"),
])
def test_lepton_client_rules(mutate, needle):
    body = copy.deepcopy(GOOD_LEPTON)
    mutate(body)
    errs = C.lepton_job_errors(body)
    assert _has(errs, needle), errs


def test_lepton_descendant_of_reserved_path_is_allowed():
    body = copy.deepcopy(GOOD_LEPTON)
    body["spec"]["mounts"][0]["mount_path"] = "/var/data"
    assert C.lepton_job_errors(body) == []


# ------------------------------------------------------------------ SkyPilot
GOOD_SKY_TASK = {
    "name": "llama-pretrain",
    "num_nodes": 2,
    "resources": {"infra": "k8s", "accelerators": "H100:8", "image_id": "docker:nvcr.io/nvidia/nemo:25.04",
                  "cpus": "32+", "memory": "256+", "disk_size": 512},
    "envs": {"NCCL_DEBUG": "INFO", "HF_TOKEN": ""},
    "file_mounts": {"/nemo_run": "/tmp/nemo_run/job"},
    "setup": "pip list | grep torch",
    "run": "torchrun --nnodes=$SKYPILOT_NUM_NODES train.py\n",
    "workdir": None,  # None-valued top-level keys are dropped, as SkyPilot does
}


def test_skypilot_good():
    assert C.skypilot_task_errors(GOOD_SKY_TASK) == []
    task = copy.deepcopy(GOOD_SKY_TASK)
    task["file_mounts"]["/data"] = {"name": "my-bucket", "source": "s3://my-bucket", "mode": "mount"}
    task["resources"]["cloud"] = "Kubernetes"  # case_insensitive_enum
    del task["resources"]["infra"]
    assert C.skypilot_task_errors(task) == []


def test_skypilot_runn_typo():
    task = copy.deepcopy(GOOD_SKY_TASK)
    task["runn"] = task.pop("run")
    errs = C.skypilot_task_errors(task)
    assert _has(errs, "runn"), errs


@pytest.mark.parametrize("mutate, needle", [
    (lambda t: t.__setitem__("num_nodes", "two"), "num_nodes"),
    (lambda t: t["resources"].__setitem__("accelerator", "H100:8"), "accelerator"),
    (lambda t: t["resources"].__setitem__("use_spot", "maybe"), "resources/use_spot"),
    (lambda t: t["resources"].__setitem__("cloud", "k8s"), "resources/cloud"),  # case_insensitive_enum
    (lambda t: t["envs"].__setitem__("HF_TOKEN", None), "envs/HF_TOKEN"),
    (lambda t: t["envs"].__setitem__("1BAD", "x"), "envs"),
    (lambda t: t["file_mounts"].__setitem__("/d", {"name": "b", "mode": "MOUNT", "sorce": "s3://b"}), "sorce"),
])
def test_skypilot_bad(mutate, needle):
    task = copy.deepcopy(GOOD_SKY_TASK)
    mutate(task)
    errs = C.skypilot_task_errors(task)
    assert _has(errs, needle), errs


# ------------------------------------------------------------------ Docker
def _good_docker_kwargs() -> dict:
    from docker.types import DeviceRequest, Ulimit

    return dict(
        image="nvcr.io/nvidia/nemo:25.04",
        command=["bash", "-c", "bash /nemo_run/launch.sh"],
        detach=True, remove=True, name="llama-pretrain-0",
        environment={"NCCL_DEBUG": "INFO"}, labels={"nemo-run/id": "abc"},
        working_dir="/nemo_run/code", volumes=["/data:/data", "/tmp/job:/nemo_run"],
        shm_size="30g", ipc_mode="host", runtime="nvidia", network="nemo_run",
        device_requests=[DeviceRequest(count=8, capabilities=[["compute", "utility"]])],
        ulimits=[Ulimit(name="memlock", soft=-1, hard=-1)],
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
    )


def test_docker_good_and_body():
    kw = _good_docker_kwargs()
    assert C.docker_create_errors(kw) == []
    body, query = C.docker_create_request(kw)
    assert query == {"name": "llama-pretrain-0"}
    assert body == C.docker_create_body(kw)
    assert body["Env"] == ["NCCL_DEBUG=INFO"]
    assert body["Cmd"] == ["bash", "-c", "bash /nemo_run/launch.sh"]
    hc = body["HostConfig"]
    assert hc["ShmSize"] == 30 * 1024 ** 3 and hc["AutoRemove"] is True and hc["Runtime"] == "nvidia"
    assert hc["Binds"] == ["/data:/data", "/tmp/job:/nemo_run"] and hc["NetworkMode"] == "nemo_run"
    assert hc["DeviceRequests"][0]["Count"] == 8
    C.assert_valid_docker_create(kw)


@pytest.mark.parametrize("change, needle", [
    ({"enviroment": {"A": "1"}}, "unexpected keyword argument 'enviroment'"),
    ({"shm_size": "30 gigs"}, "DockerException"),
    ({"restart_policy": "always"}, "restart_policy"),
    ({"network_mode": "host"}, "can not be used together"),
])
def test_docker_bad_kwargs(change, needle):
    kw = dict(_good_docker_kwargs(), **change)
    errs = C.docker_create_errors(kw)
    assert _has(errs, needle), errs


def test_docker_raw_body_strict():
    body = C.docker_create_body(_good_docker_kwargs())
    assert C.docker_body_errors(body) == []  # explicit nulls are dropped first
    bad = copy.deepcopy(body)
    bad["Env"] = {"A": "1"}
    bad["Imagee"] = "x"
    bad["HostConfig"]["RestartPolicy"] = {"Name": "sometimes"}
    bad["HostConfig"]["ShmSize"] = "30g"
    bad["HostConfig"]["Gpus"] = "all"
    errs = C.docker_body_errors(bad)
    for needle in (("Env", "not of type 'array'"), ("<root>", "Imagee"), ("HostConfig/RestartPolicy/Name",),
                   ("HostConfig/ShmSize", "integer"), ("HostConfig:", "Gpus")):
        assert _has(errs, *needle), (needle, errs)


# ------------------------------------------------------------------ CLI flags
TORCHRUN_SLURM = ("--rdzv-backend c10d --rdzv-endpoint $head_node_ip:29500 --rdzv-id 1234 --nnodes 2 "
                  "--nproc-per-node 8 --node-rank $SLURM_NODEID --tee 3 --no-python train.py --lr 1e-4").split()
TORCHRUN_LEPTON = ("--nnodes 2 --nproc-per-node 8 --node-rank $NODE_RANK --master-addr $MASTER_ADDR "
                   "--master-port $MASTER_PORT train.py").split()


@pytest.mark.parametrize("argv", [
    TORCHRUN_SLURM,
    TORCHRUN_LEPTON,
    ["torchrun", "--nnodes", "2", "--nproc-per-node", "8", "train.py"],
    "--nnodes 1:4 --nproc_per_node gpu --standalone -m pkg.train --some-script-flag".split(),
    "--nnodes=2 --nproc-per-node=8 -r 3 -t3 -- train.py".split(),
])
def test_torchrun_good(argv):
    assert C.cli_flag_errors(argv, "torchrun") == []


def test_torchrun_typo_and_prefix():
    errs = C.cli_flag_errors("--nproc-per-nodes 8 --nnodes 2 train.py".split(), "torchrun")
    assert errs == ["torchrun: unknown option '--nproc-per-nodes' (did you mean '--nproc-per-node'?)"]
    errs = C.cli_flag_errors("--nproc-per 8 train.py".split(), "torchrun")  # argparse would accept it
    assert len(errs) == 1 and _has(errs, "'--nproc-per'", "prefix"), errs
    assert C.cli_flag_errors("--ft-workload_check_interval 5 train.py".split(), "torchrun") != []
    assert C.cli_flag_errors("--standalone=1 train.py".split(), "torchrun") != []


def test_ft_launcher_flags():
    good = ("--ft-workload_check_interval 5 --ft-initial-rank-heartbeat-timeout 960 "
            "--ft-rank_heartbeat_timeout 960 --ft-ignore-missing-cfg --max-restarts 3 --nnodes 2 "
            "--nproc-per-node 8 train.py").split()
    assert C.cli_flag_errors(good, "ft_launcher") == []
    errs = C.cli_flag_errors(["--ignore-missing-fault-tol-cfg", "--nnodes", "2", "train.py"], "ft_launcher")
    assert _has(errs, "--ignore-missing-fault-tol-cfg"), errs


def test_sbatch_and_srun_flags():
    good = ("--account=acct --partition=batch --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 --time=01:00:00 "
            "--job-name=x --output=/x/%j.out --open-mode=append --exclusive --parsable -N 2 -J x "
            "--dependency=afterok:12 --container-image=nvcr.io#nvidia/pytorch:24.05-py3 script.sh --not-checked").split()
    assert C.cli_flag_errors(good, "sbatch") == []
    errs = C.cli_flag_errors(["--gpus-per-nod=8", "script.sh"], "sbatch")  # getopt accepts this prefix
    assert len(errs) == 1 and _has(errs, "'--gpus-per-nod'", "prefix"), errs
    assert _has(C.cli_flag_errors(["--gpus-per-nodes=8", "s.sh"], "sbatch"), "did you mean '--gpus-per-node'")
    srun = ["--het-group=0", "--output", "/x/log-%j.out", "--container-image", "nvcr.io#nvidia/nemo:25.04",
            "--container-mounts", "/data:/data,/job:/nemo_run:ro", "--container-workdir", "/nemo_run/code",
            "--container-env=NCCL_DEBUG,HF_HOME", "--no-container-mount-home", "--wait=60",
            "--kill-on-bad-exit=1", "--no-container-remap-root", "bash", "-c", "torchrun --bogus"]
    assert C.cli_flag_errors(srun, "srun") == []
    assert _has(C.cli_flag_errors(["--container-mount=/a:/b", "true"], "srun"), "--container-mount", "prefix")
    assert _has(C.cli_flag_errors(["--parsable", "true"], "srun"), "--parsable")  # sbatch-only flag


def test_known_flags():
    assert {"--nproc-per-node", "--nproc_per_node", "--nnodes", "-m", "--standalone"} <= C.known_flags("torchrun")
    assert "--nproc-per" not in C.known_flags("torchrun")
    assert {"--gpus-per-node", "--open-mode", "--container-image", "-N", "--parsable"} <= C.known_flags("sbatch")
    assert {"--container-mounts", "--kill-on-bad-exit", "--het-group", "--cpu-bind"} <= C.known_flags("srun")
    assert {"--ft-ignore-missing-cfg", "--ft-workload_check_interval"} <= C.known_flags("ft_launcher")
    assert "--ignore-missing-fault-tol-cfg" not in C.known_flags("ft_launcher")
    with pytest.raises(ValueError):
        C.known_flags("mpirun")


def test_sbatch_header():
    script = """#!/bin/bash
#SBATCH --account=acct
#SBATCH --gpus-per-node=8
#SBATCH --job-name="llama pretrain"
#SBATCH --open-mode=append
#SBATCH hetjob
#SBATCH --container-image=nvcr.io\\#nvidia/pytorch:24.05-py3
#SBATCH -N 2

set -euo pipefail
srun --container-image x bash -c 'echo hi'
"""
    assert C.sbatch_header_flag_errors(script) == []
    bad = script.replace("--gpus-per-node=8", "--gpus-per-nod=8") + "#SBATCH --time=1\n"
    errs = C.sbatch_header_flag_errors(bad)
    assert _has(errs, "line 3", "--gpus-per-nod") and _has(errs, "line 12", "ignored"), errs


# ------------------------------------------------------------------ vendored data
def test_vendored_files_match_provenance():
    folders = [p for p in CONTRACTS_DIR.iterdir() if p.is_dir() and not p.name.startswith("__")]
    assert {p.name for p in folders} == {"kubeflow", "runai", "lepton", "skypilot", "docker", "cli", "slurm"}
    for folder in folders:
        prov = (folder / "PROVENANCE.md").read_text()
        for f in folder.rglob("*"):
            if f.is_file() and f.name != "PROVENANCE.md":
                digest = hashlib.sha256(f.read_bytes()).hexdigest()
                assert digest in prov, f"{f.relative_to(CONTRACTS_DIR)}: sha256 {digest} not in PROVENANCE.md"


def test_validators_do_not_read_shared_folder():
    for src in CONTRACTS_DIR.glob("*.py"):
        assert not re.search(r"/work/shared|shared/schemas", src.read_text()), src
