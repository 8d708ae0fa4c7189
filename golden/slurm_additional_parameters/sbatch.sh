#!/bin/bash
# Rendered by nemorun: experiment hello/20260101-000000-000000-abcd, job hello.
# Submit: sbatch --parsable /home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/sbatch.sh

# parameters
#SBATCH --account=research
#SBATCH --chdir=/home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello
#SBATCH --comment="nightly \#42 \"smoke\" test"
#SBATCH --error=/home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/stderr.log
#SBATCH --exclude=gpu04
#SBATCH --job-name=hello
#SBATCH --mail-type=END,FAIL
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --output=/home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/stdout.log
#SBATCH --overcommit

set -euo pipefail

# setup
module load cuda/12.4
echo "setup on $(hostname)"

# command
srun \
  --kill-on-bad-exit=1 \
  --wait=60 \
  --mpi=none \
  --label \
  bash -c 'echo "hello from $(hostname) at $(date -u +%FT%TZ)"'
