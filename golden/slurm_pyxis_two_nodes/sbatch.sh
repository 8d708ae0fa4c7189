#!/bin/bash
# Rendered by nemorun: experiment train/20260101-000000-000000-abcd, job train.
# Submit: sbatch --parsable /lustre/alice/nemorun/train/20260101-000000-000000-abcd/train/sbatch.sh

# parameters
#SBATCH --error=/lustre/alice/nemorun/train/20260101-000000-000000-abcd/train/stderr.log
#SBATCH --exclusive
#SBATCH --gpus-per-node=8
#SBATCH --job-name=train
#SBATCH --mem=0
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --output=/lustre/alice/nemorun/train/20260101-000000-000000-abcd/train/stdout.log
#SBATCH --time=01:00:00

set -euo pipefail

# environment
export HF_HOME=/scratch/hf
export NCCL_DEBUG=INFO

# command
srun \
  --container-env=HF_HOME,HF_TOKEN,NCCL_DEBUG \
  --container-image='nvcr.io#nvidia/pytorch:24.05-py3' \
  --container-mounts=/data:/data:ro,/scratch:/scratch,/lustre/alice/nemorun/train/20260101-000000-000000-abcd/train:/lustre/alice/nemorun/train/20260101-000000-000000-abcd/train \
  --container-workdir=/lustre/alice/nemorun/train/20260101-000000-000000-abcd/train \
  --kill-on-bad-exit=1 \
  --wait=60 \
  python /lustre/alice/nemorun/train/20260101-000000-000000-abcd/train/nemorun_entry.py /lustre/alice/nemorun/train/20260101-000000-000000-abcd/train/function.yaml
