#!/bin/bash
# Rendered by nemorun: experiment hello/20260101-000000-000000-abcd, job hello.
# Submit: sbatch --parsable /home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/sbatch.sh

# parameters
#SBATCH --account=007
#SBATCH --error=/home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/stderr.log
#SBATCH --job-name=hello
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --output=/home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/stdout.log

set -euo pipefail

# environment
export CUDA_VERSION=12.10

# command
srun \
  --container-env=CUDA_VERSION \
  --container-image=nvcr.io/nvidia/pytorch:24.05 \
  --container-mounts=/home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello:/home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello \
  --container-workdir=/home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello \
  --kill-on-bad-exit=1 \
  --wait=60 \
  bash run.sh --tag 1.10 --flag true --x 1e3
