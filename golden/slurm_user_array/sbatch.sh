#!/bin/bash
# Rendered by nemorun: experiment hello/20260101-000000-000000-abcd, job hello.
# Submit: sbatch --parsable /shared/nemorun/hello/20260101-000000-000000-abcd/hello/sbatch.sh

# parameters
#SBATCH --array=0-3%2
#SBATCH --chdir=/shared/nemorun/hello/20260101-000000-000000-abcd/hello
#SBATCH --error=/shared/nemorun/hello/20260101-000000-000000-abcd/hello/stderr-%a.log
#SBATCH --exclusive=user
#SBATCH --job-name=hello
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --output=/shared/nemorun/hello/20260101-000000-000000-abcd/hello/stdout-%a.log

set -euo pipefail

# command
srun \
  --kill-on-bad-exit=1 \
  --wait=60 \
  bash -c 'echo "hello from $(hostname) at $(date -u +%FT%TZ)"'
