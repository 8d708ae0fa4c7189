"""Every golden case in one table: case name -> Hydra overrides.

Adding a case is one line here plus ``pytest tests/test_golden.py --update-golden`` (then read
the new files under ``golden/<case>/`` before committing them). Each case renders on the pinned
site of ``tests/helpers.py``; each artifact is compared byte for byte with ``golden/<case>/<artifact>``.
"""
from __future__ import annotations

from pathlib import Path

# the code packager=configmap ships in the kubeflow cases (absolute: goldens render on a pinned, fake submit dir)
KUBEFLOW_PROJECT = Path(__file__).resolve().parent / "data" / "kubeflow_project"

CASES: dict[str, list[str]] = {
    "local_hello": ["task=hello"],
    "local_retries": ["task=hello", "executor.retries=2"],
    "local_train_function": ["task=train", "task.params.steps=5"],
    # values reach the job as typed (str destinations); null is None for Optional fields only
    "literal_values": ["task=hello", "task.inline=null", "task.script=run.sh", "task.args=[--tag,1.10,--count,007,--flag,true,--x,1e3,--none,null,--hex,0x10]", "+executor.env_vars.CUDA_VERSION=12.10", "+executor.env_vars.DEBUG=false", "+task.env.EMPTY=null", "name=null"],
    "literal_values_slurm": ["executor=slurm", "task=hello", "task.inline=null", "task.script=run.sh", "task.args=[--tag,1.10,--flag,true,--x,1e3]", "+executor.env_vars.CUDA_VERSION=12.10", "executor.account=007", "executor.container_image=nvcr.io/nvidia/pytorch:24.05"],
    "local_script_args_env": [
        "task=hello",
        "task.inline=null",
        "task.script=scripts/run.sh",
        "task.args=[--name, 'two words', $HOME, \"it's\"]",
        "+task.env.GREETING='hello $USER'",
        "+task.env.MULTI='line1\nline2'",
        "+executor.env_vars.NCCL_DEBUG=INFO",
    ],
    "local_torchrun": ["task=ddp", "launcher=torchrun", "launcher.nproc_per_node=2"],
    "local_torchrun_script": ["task=hello", "task.inline=null", "task.script=train.py", "task.args=[--lr, '0.1']", "launcher=torchrun", "executor.ntasks_per_node=4", "launcher.max_restarts=3", "launcher.extra_args=[--tee, '3', '--local-ranks-filter=0']"],
    "local_ft": ["task=hello", "launcher=ft", "launcher.nproc_per_node=2", "launcher.rank_heartbeat_timeout=60", "launcher.rank_termination_signal=SIGKILL", "launcher.extra_args=[--term-timeout, '30']"],
    "dgxcloud_hello": ["executor=dgxcloud", "task=hello", "executor.base_url=https://tenant.example.com/api/v1", "executor.app_id=nemorun-ci", "executor.app_secret=${oc.env:DGX_APP_SECRET}", "executor.project_name=team-a", "executor.container_image=nvcr.io/nvidia/nemo:25.04", "executor.gpus_per_node=8"],
    "dgxcloud_two_nodes_pvc_env": ["executor=dgxcloud", "task=train", "executor.base_url=https://tenant.example.com/api/v1", "executor.app_id=nemorun-ci", "executor.app_secret_env=DGX_APP_SECRET", "executor.project_name=team-a", "executor.container_image=nvcr.io/nvidia/nemo:25.04", "executor.nodes=2", "executor.gpus_per_node=8", "executor.pvcs=[{claim_name: nemo-pvc, path: /pvc}, {claim_name: datasets, path: /data, read_only: true}]", "executor.workdir=/pvc/code", "+executor.env_vars.NCCL_DEBUG=INFO", "+task.env.HF_HOME=/pvc/hf"],
    "skypilot_hello_k8s": ["executor=skypilot", "task=hello", "executor.infra=k8s", "executor.cpus=2+", "executor.memory=4+"],
    "skypilot_train_torchrun": ["executor=skypilot", "task=train", "launcher=torchrun", "executor.gpus=H100", "executor.gpus_per_node=8", "executor.num_nodes=2", "executor.infra=k8s", "executor.container_image=nvcr.io/nvidia/nemo:25.04", "executor.cpus=32+", "executor.memory=256+", "executor.disk_size=512", "executor.use_spot=true", "executor.setup='pip list | grep torch'", "+executor.env_vars.NCCL_DEBUG=INFO", "+executor.file_mounts={/data: 's3://bucket/data'}", "executor.cluster_name=team-h100", "executor.idle_minutes_to_autostop=30", "executor.down=true"],
    "skypilot_script_managed": ["executor=skypilot", "task=hello", "task.inline=null", "task.script=train.py", "task.args=[--lr, '0.1', 'two words']", "executor.managed=true", "executor.gpus=A100-80GB", "executor.gpus_per_node=1", "executor.workdir=/home/user/project"],
    "lepton_hello": ["executor=lepton", "task=hello", "executor.resource_shape=cpu.small", "executor.container_image=python:3.11-slim", "executor.node_group_id=ng-abc123"],
    "lepton_train_torchrun": ["executor=lepton", "task=train", "launcher=torchrun", "executor.resource_shape=gpu.8xh100-80gb", "executor.container_image=nvcr.io/nvidia/nemo:25.04", "executor.nodes=2", "executor.gpus_per_node=8", "executor.node_group=h100-pool", "+executor.env_vars.NCCL_DEBUG=INFO", "+executor.env_vars.HF_TOKEN={secret: hf-token}", "executor.mounts=[{mount_path: /shared}, {mount_path: /data, path: /datasets, read_only: true}]", "executor.priority=high-8000", "executor.node_reservation=res-42", "executor.pre_launch_commands=[nvidia-smi, 'pip install -q wandb']", "executor.image_pull_secrets=[ngc-key]", "executor.retries=2"],
    "kubeflow_function": ["executor=kubeflow", "task=train", "task.params.steps=5", "executor.image=nvcr.io/nvidia/nemo:25.04"],
    "kubeflow_configmap_torchrun": ["executor=kubeflow", "task=hello", "task.inline=null", "task.script=train.py", "task.args=[--steps, '10', 'two words']", "packager=configmap", f"packager.base_path={KUBEFLOW_PROJECT}", "packager.include_pattern=[*.py, '*.yaml']", "launcher=torchrun", "executor.image=nvcr.io/nvidia/nemo:25.04", "executor.nodes=2", "executor.ntasks_per_node=8", "executor.gpus=8", "executor.cpu_request=32", "executor.memory_request=512Gi", "executor.memory_limit=600Gi", "+executor.env_vars.NCCL_DEBUG=INFO", "executor.volumes=[{name: data, persistentVolumeClaim: {claimName: datasets}}]", "executor.volume_mounts=[{name: data, mountPath: /data, readOnly: true}]", "executor.tolerations=[{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]", "+executor.node_selector={nvidia.com/gpu.product: H100}", "+executor.affinity={podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 1, podAffinityTerm: {topologyKey: kubernetes.io/hostname}}]}}"],
    "slurm_bare": ["executor=slurm", "task=hello", "executor.partition=batch", "executor.time=00:10:00"],
    "slurm_pyxis_two_nodes": ["executor=slurm", "task=train", "executor.nodes=2", "executor.ntasks_per_node=8", "executor.gpus_per_node=8", "executor.mem=0", "executor.exclusive=true", "executor.time=01:00:00", "executor.container_image='nvcr.io#nvidia/pytorch:24.05-py3'", "executor.container_mounts=[/data:/data:ro, /scratch:/scratch]", "executor.container_env=[HF_TOKEN]", "+executor.env_vars.NCCL_DEBUG=INFO", "+task.env.HF_HOME=/scratch/hf", "executor/tunnel=ssh", "executor.tunnel.host=login.example.com", "executor.tunnel.user=alice", "executor.tunnel.job_dir=/lustre/alice/nemorun"],
    "slurm_retries": ["executor=slurm", "task=hello", "executor.retries=3", "executor.signal=USR1@90", "executor.job_dir=/shared/nemorun"],
    "slurm_dependency_singleton": ["executor=slurm", "task=hello", "executor.dependency_type=singleton", "executor.job_name=nightly"],
    "slurm_additional_parameters": ["executor=slurm", "task=hello", "executor.account=research", "executor.exclude=gpu04", "executor.comment='nightly #42 \"smoke\" test'", "+executor.additional_parameters.mail_type='END,FAIL'", "+executor.additional_parameters.overcommit=true", "+executor.additional_parameters.hold=false", "executor.srun_args=['--mpi=none', --label]", "executor.setup_lines=['module load cuda/12.4', 'echo \"setup on $(hostname)\"']"],
    "slurm_torchrun_2nodes": ["executor=slurm", "task=ddp", "launcher=torchrun", "executor.nodes=2", "launcher.nproc_per_node=2", "launcher.max_restarts=1", "executor.partition=batch", "executor.time=00:10:00"],
    "slurm_ft_2nodes": ["executor=slurm", "task=hello", "task.inline=null", "task.script=train.py", "task.args=[--lr, '0.1', 'two words']", "launcher=ft", "executor.nodes=2", "executor.gpus_per_node=8", "launcher.rank_heartbeat_timeout=60", "launcher.rank_termination_signal=SIGKILL", "executor.retries=2", "executor.job_dir=/shared/nemorun"],
    "slurm_torchrun_pyxis": ["executor=slurm", "task=train", "launcher=torchrun", "executor.nodes=2", "executor.gpus_per_node=8", "executor.container_image='nvcr.io#nvidia/pytorch:24.05-py3'", "executor.container_mounts=[/data:/data:ro]", "+executor.env_vars.NCCL_DEBUG=INFO", "executor/tunnel=ssh", "executor.tunnel.host=login.example.com", "executor.tunnel.user=alice", "executor.tunnel.job_dir=/lustre/alice/nemorun"],
    # issue 15: a user --array writes one log pair per array task; exclusive=user; ft + time-limit signal in a container
    "slurm_user_array": ["executor=slurm", "task=hello", "+executor.additional_parameters.array='0-3%2'", "executor.exclusive=user", "executor.job_dir=/shared/nemorun"],
    "slurm_ft_signal_pyxis": ["executor=slurm", "task=train", "launcher=ft", "executor.nodes=2", "executor.gpus_per_node=8", "executor.retries=2", "executor.time=04:00:00", "executor.signal=USR1@120", "executor.container_image='nvcr.io#nvidia/pytorch:24.05-py3'", "executor.job_dir=/shared/nemorun"],
    # issue 15: tasks sharing an allocation = ONE Slurm job: a job group (same resources) and heterogeneous jobs
    "slurm_group_pair": ["experiment=packed_seeds"],
    "slurm_het_train_server": ["experiment=train_with_server"],
    "slurm_het_pyxis": ["experiment=train_with_server_pyxis"],
    # allocation=NAME packs a sweep (-m) into ONE Slurm job: a job group (same resources), a hetjob (nodes swept)
    "slurm_group_sweep": ["executor=slurm", "task=train", "task.params.seed=0,1,2", "allocation=seeds", "executor.time=00:10:00"],
    "slurm_het_sweep": ["executor=slurm", "task=ddp", "launcher=torchrun", "executor.nodes=1,2", "allocation=sizes"],
    "slurm_quoting": ["executor=slurm", "task=hello", "task.inline=null", "task.script=scripts/run.sh", "task.args=[--name, 'two words', $HOME, \"it's\", 'a\nb', '#notacomment']", "+task.env.GREETING='hello $USER'", "+task.env.MULTI='line1\nline2'", "+task.env.QUOTE=\"it's \\\"quoted\\\"\"", "executor.container_workdir=/work/project"],
    "kubeflow_configmap_function": ["executor=kubeflow", "task=train", "executor.image=nvcr.io/nvidia/nemo:25.04", "executor.namespace=team-a", "executor.runtime_kind=TrainingRuntime", "executor.runtime_name=my-torch", "packager=configmap", f"packager.base_path={KUBEFLOW_PROJECT}", "packager.relative_path=src", "packager.configmap_prefix=code"],
    "docker_minimal": ["executor=docker", "task=hello", "executor.container_image=python:3.11-slim"],
    "docker_gpus_shm_ipc_runtime": ["executor=docker", "task=train", "executor.container_image=nvcr.io/nvidia/nemo:25.04", "executor.num_gpus=-1", "executor.shm_size=30g", "executor.ipc_mode=host", "executor.runtime=nvidia", "executor.retries=2", "+executor.ulimits={memlock: '-1', stack: '67108864'}", "executor.network=host"],
    "docker_volumes_env_quoting": ["executor=docker", "task=hello", "task.inline=null", "task.script=scripts/run.sh", "task.args=[--name, 'two words', $HOME, \"it's\"]", "executor.container_image=local/busybox:1", "executor.shell=sh", "executor.volumes=['/data/my set:/data:ro', '/scratch:/scratch', 'hf-cache:/root/.cache']", "+task.env.GREETING='hello $USER'", "+task.env.MULTI='line1\nline2'", "+task.env.QUOTE=\"it's \\\"quoted\\\" = yes\"", "+executor.env_vars.NCCL_DEBUG=INFO", "executor.user='1000:1000'", "executor.working_dir=/workspace", "+executor.labels={team: nlp, owner: 'alice o\\'brien'}", "executor.network=none"],
    "docker_torchrun": ["executor=docker", "task=ddp", "launcher=torchrun", "executor.container_image=nvcr.io/nvidia/nemo:25.04", "executor.num_gpus=8", "executor.ipc_mode=host", "executor.shm_size=16g", "launcher.max_restarts=1"],
    # every executor x launcher: the forms not covered above
    "docker_ft": ["executor=docker", "task=train", "launcher=ft", "executor.container_image=nvcr.io/nvidia/nemo:25.04", "executor.num_gpus=8", "executor.ipc_mode=host", "launcher.rank_heartbeat_timeout=60"],
    "kubeflow_ft": ["executor=kubeflow", "task=train", "launcher=ft", "executor.image=nvcr.io/nvidia/nemo:25.04", "executor.nodes=2", "executor.gpus=8", "launcher.initial_rank_heartbeat_timeout=600"],
    "skypilot_ft": ["executor=skypilot", "task=train", "launcher=ft", "executor.gpus=H100", "executor.gpus_per_node=8", "executor.num_nodes=2", "executor.infra=k8s"],
    "lepton_ft": ["executor=lepton", "task=train", "launcher=ft", "executor.resource_shape=gpu.8xh100-80gb", "executor.container_image=nvcr.io/nvidia/nemo:25.04", "executor.nodes=2", "executor.gpus_per_node=8", "executor.node_group_id=ng-abc123"],
    "dgxcloud_torchrun": ["executor=dgxcloud", "task=train", "launcher=torchrun", "executor.base_url=https://tenant.example.com/api/v1", "executor.app_id=nemorun-ci", "executor.app_secret_env=DGX_APP_SECRET", "executor.project_name=team-a", "executor.container_image=nvcr.io/nvidia/nemo:25.04", "executor.nodes=2", "executor.gpus_per_node=8"],
    "dgxcloud_ft": ["executor=dgxcloud", "task=train", "launcher=ft", "executor.base_url=https://tenant.example.com/api/v1", "executor.app_id=nemorun-ci", "executor.app_secret_env=DGX_APP_SECRET", "executor.project_name=team-a", "executor.container_image=nvcr.io/nvidia/nemo:25.04", "executor.nodes=1", "executor.gpus_per_node=8"],
    # secret references in env: the reference is rendered, never a value
    "kubeflow_secret_env": ["executor=kubeflow", "task=train", "executor.image=nvcr.io/nvidia/nemo:25.04", "executor.namespace=team-a", "+executor.env_vars.HF_TOKEN={secret: hf-token, key: token}", "+executor.env_vars.WANDB_API_KEY={secret: wandb, key: api-key}", "+executor.env_vars.NCCL_DEBUG=INFO"],
    # packager=pattern: the archive's files in the ConfigMap; a memory-backed /dev/shm of a set size; numProcPerNode = what torchrun starts
    "kubeflow_pattern_shm": ["executor=kubeflow", "task=hello", "task.inline=null", "task.script=train.py", "packager=pattern", f"packager.relative_path={KUBEFLOW_PROJECT}", "packager.include_pattern=[train.py, 'src/**/*.py']", "launcher=torchrun", "launcher.nproc_per_node=4", "executor.image=nvcr.io/nvidia/nemo:25.04", "executor.nodes=2", "executor.gpus=8", "executor.shm_size=64g"],
    # managed job with retries: resources.job_recovery.max_restarts_on_errors
    "skypilot_managed_retries": ["executor=skypilot", "task=train", "executor.managed=true", "executor.retries=3", "executor.gpus=H100", "executor.gpus_per_node=8", "executor.infra=k8s"],
    "dgxcloud_secret_env": ["executor=dgxcloud", "task=hello", "executor.base_url=https://tenant.example.com/api/v1", "executor.app_id=nemorun-ci", "executor.app_secret_env=DGX_APP_SECRET", "executor.project_name=team-a", "executor.container_image=nvcr.io/nvidia/nemo:25.04", "+executor.env_vars.HF_TOKEN={secret: hf-token, key: token}", "+executor.env_vars.NCCL_DEBUG=INFO"],
    # packager=pattern on Lepton: the archive travels base64 in the command, unpacked under nemo_run_dir on the mount; gpus_per_node from the shape
    "lepton_pattern_nemo_run_dir": ["executor=lepton", "task=hello", "task.inline=null", "task.script=train.py", "packager=pattern", f"packager.relative_path={KUBEFLOW_PROJECT}", "packager.include_pattern=[train.py, 'src/**/*.py']", "launcher=torchrun", "executor.resource_shape=gpu.8xh100-80gb", "executor.container_image=nvcr.io/nvidia/nemo:25.04", "executor.node_group_id=ng-abc123", "executor.mounts=[{mount_path: /nemo-workspace}]", "executor.nemo_run_dir=/nemo-workspace/nemo_run", "executor.pre_launch_commands=['pip install -q -r requirements.txt']"],
    # packager=pattern on DGX Cloud: code unpacked on the PVC by the submitter; workingDir and the function files in the job folder there
    "dgxcloud_pattern_pvc_function": ["executor=dgxcloud", "task=train", "packager=pattern", f"packager.relative_path={KUBEFLOW_PROJECT}", "packager.include_pattern=[train.py, 'src/**/*.py']", "executor.base_url=https://tenant.example.com/api/v1", "executor.app_id=nemorun-ci", "executor.app_secret_env=DGX_APP_SECRET", "executor.project_name=team-a", "executor.container_image=nvcr.io/nvidia/nemo:25.04", "executor.nodes=2", "executor.gpus_per_node=8", "executor.pvcs=[{claim_name: nemo-pvc, path: /nemo-workspace}]", "executor.pvc_nemo_run_dir=/nemo-workspace/nemo_run"],
}
