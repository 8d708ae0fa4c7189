"""The typed Python API (NeMo-Run's names) is the CLI's contract in another form.

Every golden case and every example of NeMo-Run's execution guide, written with the API, must
render byte for byte what the CLI renders; bad arguments fail at construction with the CLI's own
one line; jobs launched from Python run for real here (and on the Slurm test cluster in
tests/test_python_api_slurm.py) and rerun from the shell.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import pytest
import yaml
from omegaconf import OmegaConf

import nemorun
from nemorun import compose as composing
from nemorun import python_api
from nemorun.command import ENTRY_FILE
from nemorun.errors import ConfigError
from nemorun.lower import Site
from nemorun.plan import plan, plan_config
from tests.conftest import ROOT
from tests.golden_cases import CASES
from tests.helpers import PINNED_SITE, git, run_cli
from tests.test_golden import render_case


def cli_compose(overrides: Sequence[str]) -> Any:
    """What ``nemorun overrides...`` composes (free-form maps, user config folders and all)."""
    with composing.hydra_context(), composing.described():
        return composing.compose_files(list(overrides))


def render(overrides: Sequence[str], site: Site = PINNED_SITE) -> dict[str, str]:
    planned = plan_config(cli_compose(overrides), site, overrides).jobs
    return {(f"{p.job.name}/" if len(planned) > 1 else "") + name: text
            for p in planned for name, text in p.rendered.artifacts.items()}


def python_form(cli: Sequence[str]) -> list[str]:
    """The CLI form -> the API's objects -> the override list the API launches. Multi-task
    experiments are rebuilt task by task with ``Experiment.add``, as a user would write them."""
    if composing.is_sweep(cli):  # add_sweep: the first point's objects, then the swept keys as the grid
        grid = {str(o.get_key_element()): list(o.value().list) for o in composing.parse_overrides(cli) if o.is_sweep_override()}
        cfg = cli_compose(composing.sweep_batch(cli)[0])
        composed = python_api.from_config(cfg)
        assert composed.task is not None
        exp = nemorun.Experiment(composed.name or str(composed.task.name), executor=composed.executor)
        exp.add_sweep(composed.task, grid=grid, allocation=cfg.get("allocation"))
        overrides, sweep = exp.overrides()
        assert sweep
        return overrides
    cfg = cli_compose(cli)
    if cfg.get("experiment") is None:
        composed = python_api.from_config(cfg)
        assert composed.task is not None
        exp = nemorun.Experiment(composed.name or str(composed.task.name), executor=composed.executor)
        exp.add(composed.task)
        overrides, sweep = exp.overrides()
        assert not sweep
        return overrides
    exp = nemorun.Experiment(str(cfg.get("name") or cfg.experiment.name))
    base = [o for o in cli if not o.lstrip("+~").startswith("experiment")]
    for name, spec in cfg.experiment.tasks.items():
        task_cfg = python_api.from_config(cli_compose([*base, *[str(o) for o in spec.overrides]]))
        assert task_cfg.task is not None
        exp.add(task_cfg.task, executor=task_cfg.executor, name=str(name), depends_on=list(spec.depends_on),
                dependency_type=str(spec.dependency_type), allocation=spec.get("allocation"))
    return exp.overrides()[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_golden_case_renders_the_same_from_python(case: str) -> None:
    overrides = python_form(CASES[case])
    if composing.is_sweep(overrides):  # planned as `nemorun -m` plans it
        with composing.hydra_context() as loader:
            planned = plan(composing.sweep_batch(overrides), composing.FilesComposer(loader), PINNED_SITE, multirun=True).jobs
        rendered = {(f"{p.job.name}/" if len(planned) > 1 else "") + name: text
                    for p in planned for name, text in p.rendered.artifacts.items()}
    else:
        rendered = render(overrides)
    # render_case leaves out the shipped entry point (it checks it is entry.py byte for byte)
    assert {k: v for k, v in rendered.items() if k.rpartition("/")[2] != ENTRY_FILE} == render_case(CASES[case])


# -- NeMo-Run's execution guide, written with the API -----------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A committed git repository with a src/ folder (GitArchivePackager(subpath="src") ships it)."""
    repo = tmp_path / "project"
    (repo / "src" / "your_library").mkdir(parents=True)
    (repo / "src" / "your_library" / "__init__.py").write_text("")
    (repo / "configs").mkdir()
    (repo / "configs" / "a.yaml").write_text("a: 1\n")
    (repo / "train.py").write_text("print('train')\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


COMMON_ENVS = {"TORCH_NCCL_AVOID_RECORD_STREAMS": "1", "NCCL_NVLS_ENABLE": "0"}


def seed_examples(repo: Path) -> dict[str, tuple[Any, list[str]]]:
    """Each executor example of the guide: (the executor as NeMo-Run code builds it, the CLI form).
    Only what nemorun spells differently changes: DGX Cloud's app secret is a reference, never a
    literal; Kubeflow's python_file is the task, not an executor field."""
    return {
        "docker": (
            nemorun.DockerExecutor(container_image="python:3.12", num_gpus=-1, runtime="nvidia", ipc_mode="host",
                                   shm_size="30g", volumes=["/local/path:/path/in/container"],
                                   env_vars={"PYTHONUNBUFFERED": "1"}, packager=nemorun.Packager()),
            ["executor=docker", "executor.container_image=python:3.12", "executor.num_gpus=-1", "executor.runtime=nvidia",
             "executor.ipc_mode=host", "executor.shm_size=30g", "executor.volumes=[/local/path:/path/in/container]",
             "executor.env_vars.PYTHONUNBUFFERED='1'", "packager=none"],
        ),
        "slurm": (
            nemorun.SlurmExecutor(account="your-account", partition="your-partition", ntasks_per_node=8, gpus_per_node=8,
                                  nodes=8, tunnel=nemorun.SSHTunnel(host="your-slurm-host", user="your-user",
                                                                    job_dir="/lustre/your-user/runs", identity="~/.ssh/id_ed25519"),
                                  container_image="your-nemo-image", time="00:30:00", env_vars=COMMON_ENVS,
                                  container_mounts=["/lustre:/lustre"], dependency_type="afterok",
                                  packager=nemorun.GitArchivePackager(subpath="src")),
            ["executor=slurm", "executor/tunnel=ssh", "executor.account=your-account", "executor.partition=your-partition",
             "executor.ntasks_per_node=8", "executor.gpus_per_node=8", "executor.nodes=8", "executor.tunnel.host=your-slurm-host",
             "executor.tunnel.user=your-user", "executor.tunnel.job_dir=/lustre/your-user/runs",
             "executor.tunnel.identity='~/.ssh/id_ed25519'", "executor.container_image=your-nemo-image",
             "executor.time=00:30:00", "executor.env_vars.TORCH_NCCL_AVOID_RECORD_STREAMS='1'",
             "executor.env_vars.NCCL_NVLS_ENABLE='0'", "executor.container_mounts=[/lustre:/lustre]",
             "packager=git", "packager.subpath=src"],
        ),
        "slurm_local_tunnel_hybrid": (
            nemorun.SlurmExecutor(partition="batch", tunnel=nemorun.LocalTunnel(),
                                  packager=nemorun.HybridPackager(sub_packagers={
                                      "code": nemorun.GitArchivePackager(subpath="src"),
                                      "configs": nemorun.PatternPackager(include_pattern="configs/*.yaml", relative_path=str(repo))})),
            ["executor=slurm", "executor.partition=batch", "packager=hybrid",
             "packager.sub_packagers.code={kind: git, subpath: src}",
             f"packager.sub_packagers.configs={{kind: pattern, include_pattern: 'configs/*.yaml', relative_path: '{repo}'}}"],
        ),
        "skypilot": (
            nemorun.SkypilotExecutor(gpus="RTX5880-ADA-GENERATION", gpus_per_node=8, num_nodes=8, env_vars=COMMON_ENVS,
                                     container_image="your-nemo-image", cloud="kubernetes", cluster_name="tester",
                                     setup="\n    conda deactivate\n    nvidia-smi\n    ls -al ./\n    "),
            ["executor=skypilot", "executor.gpus=RTX5880-ADA-GENERATION", "executor.gpus_per_node=8", "executor.num_nodes=8",
             "executor.env_vars.TORCH_NCCL_AVOID_RECORD_STREAMS='1'", "executor.env_vars.NCCL_NVLS_ENABLE='0'",
             "executor.container_image=your-nemo-image", "executor.cloud=kubernetes", "executor.cluster_name=tester",
             "executor.setup='\n    conda deactivate\n    nvidia-smi\n    ls -al ./\n    '"],
        ),
        "dgxcloud": (
            nemorun.DGXCloudExecutor(base_url="https://tenant.example.com/api/v1", app_id="YOUR_RUNAI_APP_ID",
                                     app_secret="${oc.env:DGX_APP_SECRET}", project_name="your-project",
                                     container_image="your-nemo-image", nodes=4, gpus_per_node=8,
                                     pvcs=[{"name": "your-pvc-k8s-name", "path": "/your_custom_path"}], env_vars=COMMON_ENVS),
            ["executor=dgxcloud", "executor.base_url=https://tenant.example.com/api/v1", "executor.app_id=YOUR_RUNAI_APP_ID",
             "executor.app_secret=${oc.env:DGX_APP_SECRET}", "executor.project_name=your-project",
             "executor.container_image=your-nemo-image", "executor.nodes=4", "executor.gpus_per_node=8",
             "executor.pvcs=[{claim_name: your-pvc-k8s-name, path: /your_custom_path}]",
             "executor.env_vars.TORCH_NCCL_AVOID_RECORD_STREAMS='1'", "executor.env_vars.NCCL_NVLS_ENABLE='0'"],
        ),
        "lepton": (
            nemorun.LeptonExecutor(resource_shape="gpu.8xh100-80gb", node_group="my-node-group", container_image="your-nemo-image",
                                   nodes=4, nemo_run_dir="/nemo-workspace/nemo-run", gpus_per_node=8,
                                   mounts=[{"path": "/nemo-workspace", "mount_path": "/nemo-workspace"}], env_vars=COMMON_ENVS,
                                   node_reservation="my-node-reservation", pre_launch_commands=["nvidia-smi"],
                                   image_pull_secrets=["my-image-pull-secret"]),
            ["executor=lepton", "executor.resource_shape=gpu.8xh100-80gb", "executor.node_group=my-node-group",
             "executor.container_image=your-nemo-image", "executor.nodes=4", "executor.nemo_run_dir=/nemo-workspace/nemo-run",
             "executor.gpus_per_node=8", "executor.mounts=[{path: /nemo-workspace, mount_path: /nemo-workspace}]",
             "executor.env_vars.TORCH_NCCL_AVOID_RECORD_STREAMS='1'", "executor.env_vars.NCCL_NVLS_ENABLE='0'",
             "executor.node_reservation=my-node-reservation", "executor.pre_launch_commands=[nvidia-smi]",
             "executor.image_pull_secrets=[my-image-pull-secret]"],
        ),
        "kubeflow": (
            nemorun.KubeflowExecutor(nodes=2, ntasks_per_node=4, namespace="default", runtime_name="torch-distributed-nemo",
                                     cpu_request="4", cpu_limit="8", memory_request="8Gi", memory_limit="16Gi", gpus=4,
                                     image="nvcr.io/nvidia/nemo:25.04",
                                     packager=nemorun.ConfigMapPackager(include_pattern="*.py", relative_path=".",
                                                                        namespace="default", base_path=str(repo))),
            ["executor=kubeflow", "executor.nodes=2", "executor.ntasks_per_node=4", "executor.namespace=default",
             "executor.runtime_name=torch-distributed-nemo", "executor.cpu_request='4'", "executor.cpu_limit='8'",
             "executor.memory_request=8Gi", "executor.memory_limit=16Gi", "executor.gpus=4",
             "executor.image=nvcr.io/nvidia/nemo:25.04", "packager=configmap", "packager.include_pattern=*.py",
             "packager.relative_path=.", "packager.namespace=default", f"packager.base_path={repo}"],
        ),
    }


SEED_TASKS: dict[str, tuple[Any, list[str]]] = {
    "function": (nemorun.Partial("nemorun.examples.train.train", steps=5, lr=0.01),
                 ["task=train", "task.params.steps=5", "task.params.lr=0.01", "~task.params.seed"]),
    "script": (nemorun.Script(path="train.py", args=["--lr", "0.1", "two words"]),
               ["task=hello", "task.name=train", "task.inline=null", "task.script=train.py", "task.args=[--lr, '0.1', 'two words']"]),
}


@pytest.mark.parametrize("task", sorted(SEED_TASKS))
@pytest.mark.parametrize("example", ["docker", "slurm", "slurm_local_tunnel_hybrid", "skypilot", "dgxcloud", "lepton", "kubeflow"])
def test_seed_examples_dry_run_like_the_cli(example: str, task: str, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    site = dataclasses.replace(PINNED_SITE, submit_dir=str(project))
    executor, cli = seed_examples(project)[example]
    py_task, cli_task = SEED_TASKS[task]
    exp = nemorun.Experiment("seed", executor=executor)
    exp.add(py_task)
    overrides, _ = exp.overrides()
    assert render(overrides, site) == render([*cli, *cli_task, "name=seed"], site)


def test_dryrun_prints_the_artifacts_and_records_nothing(nemorun_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ex = nemorun.SlurmExecutor(partition="batch", time="00:10:00", launcher="torchrun", nodes=2)
    assert nemorun.run(nemorun.Partial("nemorun.examples.ddp.report"), executor=ex, dryrun=True) is None
    out = capsys.readouterr().out
    assert "sbatch.sh" in out and "torchrun" in out and "--partition=batch" in out
    assert not (nemorun_home / "experiments").exists()


# -- bad arguments: the CLI's one line, at construction ----------------------------------------


def cli_error(overrides: Sequence[str], env: dict[str, str]) -> str:
    proc = run_cli([*overrides, "dryrun=true"], env=env)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    return line.removeprefix("nemorun: error: ")


@pytest.mark.parametrize(("build", "cli"), [
    (lambda: nemorun.LocalExecutor(retrys=1), ["task=hello", "executor.retrys=1"]),
    (lambda: nemorun.SlurmExecutor(nodse=2), ["executor=slurm", "task=hello", "executor.nodse=2"]),
    (lambda: nemorun.SlurmExecutor(time="soon"), ["executor=slurm", "task=hello", "executor.time=soon"]),
    (lambda: nemorun.SlurmExecutor(nodes=0), ["executor=slurm", "task=hello", "executor.nodes=0"]),
    (lambda: nemorun.DockerExecutor(container_image="x", num_gpus=-2), ["executor=docker", "task=hello", "executor.container_image=x", "executor.num_gpus=-2"]),
    (lambda: nemorun.SlurmExecutor(tunnel=nemorun.SSHTunnel(host="h", job_dir="/j", portt=22)),
     ["executor=slurm", "executor/tunnel=ssh", "task=hello", "executor.tunnel.host=h", "executor.tunnel.job_dir=/j", "executor.tunnel.portt=22"]),
    (lambda: nemorun.Partial(_train(), stepz=3),
     ["task=train", "+task.params.stepz=3"]),
])
def test_bad_arguments_fail_at_construction_with_the_cli_line(build: Any, cli: list[str], cli_env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        build()
    assert str(err.value) == cli_error(cli, cli_env)
    assert "\n" not in str(err.value)


def _set_later(obj: Any, **fields: Any) -> Any:
    """NeMo-Run scripts assign fields after construction (``executor.launcher = "torchrun"``)."""
    for key, value in fields.items():
        setattr(obj, key, value)
    return obj


def _train() -> Any:
    from nemorun.examples.train import train

    return train


@pytest.mark.parametrize(("build", "message"), [
    (lambda: nemorun.SlurmExecutor(nodes="two"), "executor.nodes='two': Value 'two' of type 'str' could not be converted to Integer"),
    (lambda: nemorun.LocalExecutor(launcher="torchrunn"), "executor.launcher='torchrunn': use one of none, default, torchrun, ft"),
    (lambda: nemorun.LocalExecutor(packager="git"), "executor.packager must be a packager"),
    (lambda: nemorun.KubeflowExecutor(python_file="train.py"), "executor.python_file is not a setting in nemorun: the file is the task"),
    (lambda: nemorun.DGXCloudExecutor(base_url="https://x/api/v1", app_id="a", app_secret="literal", project_name="p", container_image="i"),
     "executor: app_secret holds a literal value"),
    (lambda: nemorun.Script(), "Script needs exactly one of path=... or inline=..."),
    (lambda: nemorun.Partial(lambda: 0), "Partial function <lambda>"),
    (lambda: nemorun.Experiment("bad title"), "experiment title must be a name"),
    (lambda: nemorun.Experiment("t").add(nemorun.Script(inline="true"), depends_on=["nope"]), "depends_on: no job 'nope'"),
    (lambda: nemorun.Experiment("t").add(nemorun.Script(inline="true"), executor="local"), "executor must be a nemorun executor"),  # type: ignore[arg-type]
    (lambda: nemorun.Experiment("t").run(), "experiment 't' has no jobs"),
    (lambda: nemorun.Experiment("t").status(), "experiment 't' has not run yet"),
    (lambda: nemorun.to_yaml(nemorun.LocalExecutor(launcher="torchrun")), "to_yaml writes executor/<name>.yaml only"),
    (lambda: nemorun.Script(path="train.py", entrypoint="python"), "unknown key 'task.entrypoint'"),
    (lambda: nemorun.Experiment("t").add(nemorun.Script(inline="true"), executor=_set_later(nemorun.LocalExecutor(), launcher="torchrunn")),
     "executor.launcher='torchrunn'"),
    (lambda: nemorun.Experiment("t").add(nemorun.Partial(_train(), lr=object())), "object value <object object"),
    (lambda: nemorun.Experiment("t").add_sweep(nemorun.Partial(_train()), grid={"lrr": [1]}), "unknown key 'task.params.lrr'; did you mean 'task.params.lr'?"),
])
def test_bad_arguments_are_one_line_config_errors(build: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_clone_and_replace_mix_and_match() -> None:
    base = nemorun.SlurmExecutor(partition="batch", nodes=2, env_vars={"A": "1"})
    other = base.clone()
    other.env_vars["B"] = "2"
    assert base.env_vars == {"A": "1"}
    bigger = dataclasses.replace(base, nodes=4)
    assert (bigger.nodes, bigger.partition, bigger.kind) == (4, "batch", "slurm")
    with pytest.raises(ConfigError, match="nodes must be >= 1"):
        dataclasses.replace(base, nodes=0)


def test_nemo_run_spellings_are_accepted() -> None:
    ex = nemorun.SlurmExecutor(gres="gpu:8", mem_per_gpu="40G")
    assert ex.additional_parameters == {"gres": "gpu:8", "mem-per-gpu": "40G"}
    assert nemorun.SkypilotExecutor(autodown=True).down is True
    lep = nemorun.LeptonExecutor(resource_shape="cpu.small", container_image="i", mounts=[{"from": "local:/x", "mount_path": "/m"}])
    assert lep.mounts == [{"source": "local:/x", "mount_path": "/m"}]


# -- bridge to config files ------------------------------------------------------------------


def test_to_yaml_writes_an_option_the_cli_composes_the_same(tmp_path: Path, cli_env: dict[str, str]) -> None:
    ex = nemorun.SlurmExecutor(account="acct", partition="batch", nodes=2, time="01:00:00", env_vars={"NCCL_DEBUG": "INFO"},
                               tunnel=nemorun.SSHTunnel(host="login.example.com", user="alice", job_dir="/lustre/alice/nemorun"))
    text = nemorun.to_yaml(ex, name="mycluster", config_dir=tmp_path / "conf")
    assert (tmp_path / "conf" / "executor" / "mycluster.yaml").read_text() == text
    proc = run_cli(["--config-dir", str(tmp_path / "conf"), "executor=mycluster", "task=hello", "--cfg", "job"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    from_cli = yaml.safe_load(proc.stdout)["executor"]
    from_python = OmegaConf.to_container(cli_compose(python_api.executor_overrides(ex)).executor)
    assert from_cli == from_python
    back = nemorun.compose_typed(["executor=slurm", "executor/tunnel=ssh", "executor.account=acct", "executor.partition=batch",
                            "executor.nodes=2", "executor.time=01:00:00", "executor.env_vars.NCCL_DEBUG=INFO",
                            "executor.tunnel.host=login.example.com", "executor.tunnel.user=alice",
                            "executor.tunnel.job_dir=/lustre/alice/nemorun", "task=train"])
    assert back.executor == ex
    assert isinstance(back.task, nemorun.Partial) and back.task.target == "nemorun.examples.train.train"


# -- for real, on this machine ---------------------------------------------------------------


USER_MODULE = """\
import json
from dataclasses import dataclass


@dataclass
class Optimizer:
    name: str
    lr: float


def fit(optim: Optimizer, schedule: list, steps: int = 1) -> None:
    print("fit", json.dumps({"optim": [type(optim).__name__, optim.name, optim.lr],
                            "schedule": [type(s).__name__ for s in schedule], "steps": steps}))
"""


@pytest.fixture
def user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A user module in the submit directory, importable here (signature checks) and on the node."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "usermod.py").write_text(USER_MODULE)
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    import importlib

    sys.modules.pop("usermod", None)
    return importlib.import_module("usermod")


def job_log(exp: nemorun.Experiment, job: str | None = None) -> str:
    return "".join(exp.logs(job))


def test_run_locally_then_rerun_from_the_shell(nemorun_home: Path, cli_env: dict[str, str], user_code: Any) -> None:
    optim = nemorun.Config(user_code.Optimizer, name="adam", lr=0.5)
    task = nemorun.Partial(user_code.fit, optim=optim, schedule=[nemorun.Config(user_code.Optimizer, name="s", lr=0.1)], steps=3)
    exp = nemorun.run(task, executor=nemorun.LocalExecutor(env_vars={"GREETING": "hi"}), name="fit-demo", detach=False)
    assert exp is not None and exp.name == "fit-demo"
    assert exp.status()["fit"].state.value == "SUCCEEDED"
    assert '"optim": ["Optimizer", "adam", 0.5], "schedule": ["Optimizer"], "steps": 3' in job_log(exp)
    assert nemorun.Experiment.latest().id == exp.id == nemorun.Experiment.load(exp.id[:22]).id

    proc = run_cli(["exp", "rerun", exp.id, "task.params.steps=7", "task.params.optim.lr=0.25"], env=cli_env, cwd=os.getcwd())
    assert proc.returncode == 0, proc.stderr
    again = nemorun.Experiment.latest()
    assert again.id != exp.id and again.status()["fit"].state.value == "SUCCEEDED"
    assert '"optim": ["Optimizer", "adam", 0.25], "schedule": ["Optimizer"], "steps": 7' in job_log(again)
    assert (again.path / "config.yaml").read_text().replace("0.25", "0.5").replace("steps: 7", "steps: 3") == \
        (exp.path / "config.yaml").read_text()


def test_experiment_with_dependencies_and_a_sweep_run_locally(nemorun_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    order = tmp_path / "order.log"
    with nemorun.Experiment("pipeline") as exp:
        prep = exp.add(nemorun.Script(inline=f"sleep 1; echo prep >> {order}"), name="prep")
        train = exp.add(nemorun.Partial("nemorun.examples.train.train", steps=2), depends_on=[prep])
        exp.add(nemorun.Script(inline=f"echo eval >> {order}", env={"STAGE": "eval"}), name="evaluate",
                depends_on=[train], dependency_type="afterany")
        exp.run(detach=False)
    assert {k: v.state.value for k, v in exp.status().items()} == dict.fromkeys(("prep", "train", "evaluate"), "SUCCEEDED")
    assert order.read_text() == "prep\neval\n"
    assert "step=2" in job_log(exp, "train")
    handles = [j.handle for j in exp.jobs]
    resumed = exp.rerun(resume=True)  # planned again from the recorded overrides: renders as recorded, submits nothing
    assert resumed is not None and resumed.id == exp.id and [j.handle for j in resumed.jobs] == handles

    sweep = nemorun.Experiment("lr-sweep")
    sweep.add_sweep(nemorun.Partial("nemorun.examples.train.train", steps=1), grid={"lr": [0.1, 0.2], "seed": [0, 1]})
    sweep.run(detach=False)
    assert sweep.meta["kind"] == "sweep" and len(sweep.jobs) == 4
    assert {s.state.value for s in sweep.status().values()} == {"SUCCEEDED"}


def test_cancel_and_logs_of_a_python_launched_job(nemorun_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exp = nemorun.run(nemorun.Script(inline="echo started; sleep 60", name="sleeper"))
    assert exp is not None
    assert exp.cancel("sleeper") == ["sleeper"]
    assert exp.wait(poll=0.2)["sleeper"].state.value == "CANCELLED"


# -- a user script type-checks ---------------------------------------------------------------


USER_SCRIPT = """\
import nemorun


def train(lr: float, steps: int = 10) -> None:
    print(lr, steps)


def main() -> None:
    ex = nemorun.SlurmExecutor(
        account="acct", partition="batch", nodes=2, gpus_per_node=8, time="00:30:00",
        tunnel=nemorun.SSHTunnel(host="login", user="me", job_dir="/lustre/me/runs"),
        packager=nemorun.GitArchivePackager(subpath="src"), launcher=nemorun.Torchrun(nproc_per_node=8),
    )
    local: nemorun.LocalExecutor = nemorun.LocalExecutor(env_vars={"A": "1"})
    with nemorun.Experiment("demo", executor=ex) as exp:
        first: str = exp.add(nemorun.Script(inline="echo prep"), executor=local)
        exp.add(nemorun.Partial(train, lr=0.1, opt=nemorun.Config(dict, a=1)), depends_on=[first])
        exp.dryrun()
    done = nemorun.run(nemorun.Script(path="eval.py", args=["--x"]), executor=ex.clone(), dryrun=True)
    if done is not None:
        print(done.status(), list(done.logs()))
    print(nemorun.to_yaml(ex), nemorun.compose_typed(["executor=slurm"]).executor)


if __name__ == "__main__":
    main()
"""


def mypy_strict(script: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` of a user's script, with nemorun as an installed typed package is seen:
    its own modules followed silently (an editable install is an import hook mypy cannot follow,
    so the source root is given as mypy_path)."""
    ini = script.parent / "mypy.ini"
    ini.write_text(f"[mypy]\nmypy_path = {ROOT / 'compiler'}\n\n[mypy-nemorun.*]\nfollow_imports = silent\n")
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--config-file", str(ini), "--cache-dir",
                           str(script.parent / ".mypy"), str(script)], capture_output=True, text=True, cwd=script.parent, timeout=600)


def test_user_script_passes_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    proc = mypy_strict(script)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("import nemorun\nnemorun.SlurmExecutor(nodes='two')\nnemorun.LocalExecutor(retrys=1)\n")
    proc = mypy_strict(broken)
    assert proc.returncode == 1 and 'Argument "nodes"' in proc.stdout and '"retrys"' in proc.stdout, proc.stdout


def test_sequential_chains_the_jobs_and_one_executor_is_shared(nemorun_home: Path) -> None:
    """``run(sequential=True)`` makes each job depend on the one before; one executor for all jobs
    goes before the experiment's tasks, so ``exp rerun ID executor.x=y`` reaches every job."""
    exp = nemorun.Experiment("chain", executor=nemorun.SlurmExecutor(partition="batch"))
    for i in range(3):
        exp.add(nemorun.Script(inline=f"echo {i}"), name=f"step{i}")
    overrides, sweep = exp.overrides(sequential=True)
    assert not sweep and overrides[:2] == ["executor=slurm", "executor.partition=batch"]
    jobs = plan_config(cli_compose(overrides), PINNED_SITE, overrides).jobs
    assert [(p.name, p.depends_on) for p in jobs] == [("step0", ()), ("step1", ("step0",)), ("step2", ("step1",))]
    assert all("#SBATCH --partition=batch" in p.rendered.artifacts["sbatch.sh"] for p in jobs)
