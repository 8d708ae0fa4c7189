"""Every field name NeMo-Run's execution guide gives its executors, packagers, tunnels and
launchers (the seed: /work/shared/reference, facts only), plus NeMo-Run's GitArchivePackager
``ref``/``include_submodules``, Docker's list-form ``ulimits`` and Slurm's ``job_name_prefix``:
each either maps to a nemorun config value (checked by composing the overrides the API writes,
as the CLI composes them) or is refused with ONE line that says where the setting lives.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import pytest
from omegaconf import OmegaConf

import nemorun
from nemorun import python_api
from nemorun.errors import ConfigError
from tests.test_python_api import cli_compose

# (what NeMo-Run code writes, expected): expected is {config path: value} (the value composed
# there; a mapping or list of mappings is matched on the keys given) or ("refused", words of the
# one-line pointer). A field NeMo-Run accepts with the value nemorun behaves as anyway maps to {}.
Row = tuple[Callable[[], Any], Any]

FIELDS: dict[str, Row] = {
    # DockerExecutor
    "docker.container_image": (lambda: nemorun.DockerExecutor(container_image="python:3.12"), {"executor.container_image": "python:3.12"}),
    "docker.num_gpus": (lambda: nemorun.DockerExecutor(num_gpus=-1), {"executor.num_gpus": -1}),
    "docker.runtime": (lambda: nemorun.DockerExecutor(runtime="nvidia"), {"executor.runtime": "nvidia"}),
    "docker.ipc_mode": (lambda: nemorun.DockerExecutor(ipc_mode="host"), {"executor.ipc_mode": "host"}),
    "docker.shm_size": (lambda: nemorun.DockerExecutor(shm_size="30g"), {"executor.shm_size": "30g"}),
    "docker.volumes": (lambda: nemorun.DockerExecutor(volumes=["/local/path:/path/in/container"]), {"executor.volumes": ["/local/path:/path/in/container"]}),
    "docker.env_vars": (lambda: nemorun.DockerExecutor(env_vars={"PYTHONUNBUFFERED": "1"}), {"executor.env_vars": {"PYTHONUNBUFFERED": "1"}}),
    "docker.packager": (lambda: nemorun.DockerExecutor(packager=nemorun.Packager()), {"packager.kind": "none"}),
    "docker.ulimits(list)": (lambda: nemorun.DockerExecutor(ulimits=["nofile:1024:65536", "memlock:-1"]),  # type: ignore[arg-type]
                             {"executor.ulimits": {"nofile": "1024:65536", "memlock": "-1"}}),
    "docker.ulimits(bad item)": (lambda: nemorun.DockerExecutor(ulimits=["nofile"]), ("refused", "executor.ulimits item 'nofile': write name:soft[:hard]")),  # type: ignore[arg-type]
    "docker.privileged": (lambda: nemorun.DockerExecutor(privileged=True), ("refused", "executor.privileged=True is not available in nemorun")),
    "docker.healthcheck": (lambda: nemorun.DockerExecutor(healthcheck={"test": ["CMD", "true"]}), ("refused", "executor.healthcheck is not a setting in nemorun")),
    "docker.additional_kwargs": (lambda: nemorun.DockerExecutor(additional_kwargs={"pid_mode": "host"}), ("refused", "every docker run option nemorun passes")),
    # SlurmExecutor + tunnels
    "slurm.account": (lambda: nemorun.SlurmExecutor(account="your-account"), {"executor.account": "your-account"}),
    "slurm.partition": (lambda: nemorun.SlurmExecutor(partition="your-partition"), {"executor.partition": "your-partition"}),
    "slurm.ntasks_per_node": (lambda: nemorun.SlurmExecutor(ntasks_per_node=8), {"executor.ntasks_per_node": 8}),
    "slurm.gpus_per_node": (lambda: nemorun.SlurmExecutor(gpus_per_node=8), {"executor.gpus_per_node": 8}),
    "slurm.nodes": (lambda: nemorun.SlurmExecutor(nodes=8), {"executor.nodes": 8}),
    "slurm.container_image": (lambda: nemorun.SlurmExecutor(container_image="your-nemo-image"), {"executor.container_image": "your-nemo-image"}),
    "slurm.time": (lambda: nemorun.SlurmExecutor(time="00:30:00"), {"executor.time": "00:30:00"}),
    "slurm.env_vars": (lambda: nemorun.SlurmExecutor(env_vars={"NCCL_NVLS_ENABLE": "0"}), {"executor.env_vars": {"NCCL_NVLS_ENABLE": "0"}}),
    "slurm.container_mounts": (lambda: nemorun.SlurmExecutor(container_mounts=["/lustre:/lustre"]), {"executor.container_mounts": ["/lustre:/lustre"]}),
    "slurm.dependency_type": (lambda: nemorun.SlurmExecutor(dependency_type="afterany"), {"executor.dependency_type": "afterany"}),
    "slurm.packager": (lambda: nemorun.SlurmExecutor(packager=nemorun.GitArchivePackager(subpath="src")), {"packager.kind": "git", "packager.subpath": "src"}),
    "slurm.job_name_prefix": (lambda: nemorun.SlurmExecutor(job_name_prefix="team-a."), {"executor.job_name": "team-a.train"}),
    "slurm.gres": (lambda: nemorun.SlurmExecutor(gres="gpu:8"), {"executor.additional_parameters": {"gres": "gpu:8"}}),
    "slurm.dependencies": (lambda: nemorun.SlurmExecutor(dependencies=["1"]), ("refused", "pass depends_on=[job ids] to Experiment.add")),
    "ssh.host+user+job_dir+identity": (
        lambda: nemorun.SlurmExecutor(tunnel=nemorun.SSHTunnel(host="your-slurm-host", user="your-user", job_dir="/lustre/runs", identity="~/.ssh/id")),
        {"executor.tunnel.kind": "ssh", "executor.tunnel.host": "your-slurm-host", "executor.tunnel.user": "your-user",
         "executor.tunnel.job_dir": "/lustre/runs", "executor.tunnel.identity": "~/.ssh/id"}),
    "local_tunnel": (lambda: nemorun.SlurmExecutor(tunnel=nemorun.LocalTunnel()), {"executor.tunnel.kind": "local"}),
    # packagers
    "git.subpath": (lambda: nemorun.GitArchivePackager(subpath="src"), {"packager.subpath": "src"}),
    "git.ref=HEAD": (lambda: nemorun.GitArchivePackager(ref="HEAD"), {"packager.kind": "git"}),
    "git.ref=branch": (lambda: nemorun.GitArchivePackager(ref="main"), ("refused", "packager.ref='main' is not available in nemorun: nemorun packs the commit checked out")),
    "git.include_submodules=False": (lambda: nemorun.GitArchivePackager(include_submodules=False), {"packager.kind": "git"}),
    "git.include_submodules=True": (lambda: nemorun.GitArchivePackager(include_submodules=True), ("refused", "git archive leaves submodules out")),
    "git.include_uncommitted": (lambda: nemorun.GitArchivePackager(include_uncommitted=True), {"packager.include_uncommitted": True}),
    "git.include_untracked": (lambda: nemorun.GitArchivePackager(include_untracked=True), ("refused", "include_uncommitted=True packs the working tree")),
    "git.include_pattern": (lambda: nemorun.GitArchivePackager(include_pattern="data/*"), ("refused", "HybridPackager")),
    "git.basepath": (lambda: nemorun.GitArchivePackager(basepath="/elsewhere"), ("refused", "launch from it")),
    "pattern.include_pattern+relative_path": (lambda: nemorun.PatternPackager(include_pattern="configs/*.yaml", relative_path="/repo"),
                                              {"packager.include_pattern": "configs/*.yaml", "packager.relative_path": "/repo"}),
    "hybrid.sub_packagers+extract_at_root": (
        lambda: nemorun.HybridPackager(sub_packagers={"code": nemorun.GitArchivePackager(subpath="src")}, extract_at_root=True),
        {"packager.sub_packagers": {"code": {"kind": "git", "subpath": "src"}}, "packager.extract_at_root": True}),
    "configmap.fields": (lambda: nemorun.ConfigMapPackager(include_pattern=["*.py", "*.yaml"], relative_path=".", namespace="default",
                                                           configmap_prefix="nemo-workspace"),
                         {"packager.include_pattern": ["*.py", "*.yaml"], "packager.relative_path": ".", "packager.namespace": "default",
                          "packager.configmap_prefix": "nemo-workspace"}),
    # SkypilotExecutor
    "skypilot.fields": (lambda: nemorun.SkypilotExecutor(gpus="RTX5880-ADA-GENERATION", gpus_per_node=8, num_nodes=8, container_image="img",
                                                         cloud="kubernetes", cluster_name="tester", setup="nvidia-smi\n"),
                        {"executor.gpus": "RTX5880-ADA-GENERATION", "executor.gpus_per_node": 8, "executor.num_nodes": 8,
                         "executor.container_image": "img", "executor.cloud": "kubernetes", "executor.cluster_name": "tester",
                         "executor.setup": "nvidia-smi\n"}),
    "skypilot.autodown": (lambda: nemorun.SkypilotExecutor(autodown=True), {"executor.down": True}),
    # DGXCloudExecutor
    "dgxcloud.fields": (lambda: nemorun.DGXCloudExecutor(base_url="https://t.example.com/api/v1", app_id="ID", app_secret="${oc.env:DGX_SECRET}",
                                                         project_name="proj", container_image="img", nodes=4, gpus_per_node=8,
                                                         pvcs=[{"name": "pvc-k8s", "path": "/ws"}]),
                        {"executor.base_url": "https://t.example.com/api/v1", "executor.app_id": "ID", "executor.app_secret": "${oc.env:DGX_SECRET}",
                         "executor.project_name": "proj", "executor.container_image": "img", "executor.nodes": 4, "executor.gpus_per_node": 8,
                         "executor.pvcs": [{"claim_name": "pvc-k8s", "path": "/ws"}]}),
    "dgxcloud.app_secret(literal)": (lambda: nemorun.DGXCloudExecutor(base_url="https://t.example.com/api/v1", app_id="ID", app_secret="s3cret",
                                                                      project_name="proj", container_image="img"), ("refused", "app_secret holds a literal value")),
    "dgxcloud.nprocs_per_node": (lambda: nemorun.DGXCloudExecutor(nprocs_per_node=8), ("refused", "launcher=Torchrun(nproc_per_node=...)")),
    # LeptonExecutor
    "lepton.fields": (lambda: nemorun.LeptonExecutor(resource_shape="gpu.8xh100-80gb", node_group="ng", container_image="img", nodes=4,
                                                     nemo_run_dir="/ws/nemo-run", gpus_per_node=8, mounts=[{"path": "/ws", "mount_path": "/ws"}],
                                                     node_reservation="res", pre_launch_commands=["nvidia-smi"], image_pull_secrets=["pull"]),
                      {"executor.resource_shape": "gpu.8xh100-80gb", "executor.node_group": "ng", "executor.container_image": "img",
                       "executor.nodes": 4, "executor.nemo_run_dir": "/ws/nemo-run", "executor.gpus_per_node": 8,
                       "executor.mounts": [{"path": "/ws", "mount_path": "/ws"}], "executor.node_reservation": "res",
                       "executor.pre_launch_commands": ["nvidia-smi"], "executor.image_pull_secrets": ["pull"]}),
    "lepton.nprocs_per_node": (lambda: nemorun.LeptonExecutor(nprocs_per_node=8), ("refused", "launcher=Torchrun(nproc_per_node=...)")),
    # KubeflowExecutor
    "kubeflow.fields": (lambda: nemorun.KubeflowExecutor(nodes=2, ntasks_per_node=4, namespace="default", runtime_name="torch-distributed-nemo",
                                                         cpu_request="4", cpu_limit="8", memory_request="8Gi", memory_limit="16Gi", gpus=4),
                        {"executor.nodes": 2, "executor.ntasks_per_node": 4, "executor.namespace": "default",
                         "executor.runtime_name": "torch-distributed-nemo", "executor.cpu_request": "4", "executor.cpu_limit": "8",
                         "executor.memory_request": "8Gi", "executor.memory_limit": "16Gi", "executor.gpus": 4}),
    "kubeflow.python_file": (lambda: nemorun.KubeflowExecutor(python_file="train.py"), ("refused", "nemorun.Script(path='train.py')")),
    "kubeflow.func": (lambda: nemorun.KubeflowExecutor(func="train"), ("refused", "nemorun.Partial(fn, ...)")),
    # launchers (run.Torchrun, run.core.execution.FaultTolerance and their names)
    "launcher=torchrun": (lambda: nemorun.LocalExecutor(launcher="torchrun"), {"launcher.kind": "torchrun"}),
    "launcher=default": (lambda: nemorun.LocalExecutor(launcher="default"), {"launcher.kind": "none"}),
    "launcher=None": (lambda: nemorun.LocalExecutor(launcher=None), {"launcher.kind": "none"}),
    "launcher=ft": (lambda: nemorun.LocalExecutor(launcher="ft"), {"launcher.kind": "ft"}),
    "launcher=Torchrun(...)": (lambda: nemorun.LocalExecutor(launcher=nemorun.Torchrun(nproc_per_node=8)), {"launcher.nproc_per_node": 8}),
    "launcher=FaultTolerance(...)": (lambda: nemorun.LocalExecutor(launcher=nemorun.FaultTolerance(max_restarts=3)), {"launcher.max_restarts": 3}),
}


def _overrides(obj: Any) -> list[str]:
    if isinstance(obj, python_api._Executor):
        return python_api.executor_overrides(obj, "train")
    if isinstance(obj, python_api._PACKAGERS):
        return python_api.packager_overrides(obj)
    raise AssertionError(type(obj))


def _holds(actual: Any, expected: Any) -> bool:
    """``expected`` is in ``actual``: mappings on the keys given, lists item by item."""
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(k in actual and _holds(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(map(_holds, actual, expected))
    return type(actual) is type(expected) and actual == expected


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_every_nemo_run_field_maps_or_is_refused_with_a_pointer(field: str) -> None:
    build, expected = FIELDS[field]
    if isinstance(expected, tuple):
        with pytest.raises(ConfigError) as err:
            _overrides(build())
        message = str(err.value)
        assert expected[1] in message and "\n" not in message, message
        assert "unknown key" not in message  # a NeMo-Run field is never "unknown": it says where it lives
        return
    overrides = _overrides(build())
    cfg = OmegaConf.to_container(cli_compose([*overrides, "task=hello"]), resolve=False)
    for path, value in expected.items():
        node: Any = cfg
        for part in path.split("."):
            node = node[part]
        assert _holds(node, value), (path, node, overrides)


def test_job_name_prefix_names_each_job_of_an_experiment() -> None:
    """NeMo-Run's prefix + the job's name, per job: jobs sharing one prefixed executor each get
    their own Slurm job name (so the executor is written per task, not shared)."""
    exp = nemorun.Experiment("pipe", executor=nemorun.SlurmExecutor(job_name_prefix="team-a.", partition="batch"))
    exp.add(nemorun.Script(inline="echo prep"), name="prep")
    exp.add(nemorun.Script(inline="echo train"), name="train", depends_on=["prep"])
    overrides, _ = exp.overrides()
    cfg = cli_compose(overrides)
    assert {name: [o for o in spec.overrides if o.startswith("executor.job_name=")] for name, spec in cfg.experiment.tasks.items()} == {
        "prep": ["executor.job_name=team-a.prep"], "train": ["executor.job_name=team-a.train"]}
    with pytest.raises(ConfigError, match="to_yaml: job_name_prefix names each job"):
        nemorun.to_yaml(nemorun.SlurmExecutor(job_name_prefix="team-a."))
