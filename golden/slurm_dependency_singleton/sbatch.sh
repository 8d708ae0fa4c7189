#!/bin/bash
# Rendered by nemorun: experiment hello/20260101-000000-000000-abcd, job hello.
# Submit: sbatch --parsable /home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/sbatch.sh

# parameters
#SBATCH --chdir=/home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello
#SBATCH --dependency=singleton
#SBATCH --error=/home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/stderr.log
#SBATCH --job-name=nightly
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --output=/home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/stdout.log

set -euo pipefail

# command
srun \
  --kill-on-bad-exit=1 \
  --wait=60 \
  bash -c 'echo "hello from $(hostname) at $(date -u +%FT%TZ)"'
