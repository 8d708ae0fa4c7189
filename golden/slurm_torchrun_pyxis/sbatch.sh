#!/bin/bash
# Rendered by nemorun: experiment train/20260101-000000-000000-abcd, job train.
# Submit: sbatch --parsable /lustre/alice/nemorun/train/20260101-000000-000000-abcd/train/sbatch.sh

# parameters
#SBATCH --error=/lustre/alice/nemorun/train/20260101-000000-000000-abcd/train/stderr.log
#SBATCH --gpus-per-node=8
#SBATCH --job-name=train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --output=/lustre/alice/nemorun/train/20260101-000000-000000-abcd/train/stdout.log

set -euo pipefail

# environment
export NCCL_DEBUG=INFO

# launcher rendezvous
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)
head_addr=$(scontrol -o show node "$head_node" 2>/dev/null | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p') || head_addr=
head_node=${head_addr:-$head_node}
export head_node

# command
srun \
  --container-env=NCCL_DEBUG \
  --container-image='nvcr.io#nvidia/pytorch:24.05-py3' \
  --container-mounts=/data:/data:ro,/lustre/alice/nemorun/train/20260101-000000-000000-abcd/train:/lustre/alice/nemorun/train/20260101-000000-000000-abcd/train \
  --container-workdir=/lustre/alice/nemorun/train/20260101-000000-000000-abcd/train \
  --kill-on-bad-exit=1 \
  --nodes=2 \
  --ntasks=2 \
  --ntasks-per-node=1 \
  --wait=60 \
  bash -c 'torchrun --rdzv-backend c10d --rdzv-endpoint $head_node:29500 --rdzv-id $SLURM_JOB_ID --nnodes 2 --nproc-per-node 8 --node-rank $SLURM_NODEID /lustre/alice/nemorun/train/20260101-000000-000000-abcd/train/nemorun_entry.py /lustre/alice/nemorun/train/20260101-000000-000000-abcd/train/function.yaml'
