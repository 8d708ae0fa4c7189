#!/bin/bash
# Rendered by nemorun: experiment hello/20260101-000000-000000-abcd, job hello.
# Submit: sbatch --parsable /shared/nemorun/hello/20260101-000000-000000-abcd/hello/sbatch.sh

# parameters
#SBATCH --chdir=/shared/nemorun/hello/20260101-000000-000000-abcd/hello
#SBATCH --error=/shared/nemorun/hello/20260101-000000-000000-abcd/hello/stderr.log
#SBATCH --job-name=hello
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/shared/nemorun/hello/20260101-000000-000000-abcd/hello/stdout.log
#SBATCH --requeue
#SBATCH --signal=USR1@90

set -euo pipefail

# command
# A failed attempt is requeued (same job id, logs appended) until it has been restarted
# 3 time(s); Slurm counts restarts in SLURM_RESTART_COUNT.
rc=0
srun \
  --kill-on-bad-exit=1 \
  --wait=60 \
  bash -c 'echo "hello from $(hostname) at $(date -u +%FT%TZ)"' || rc=$?
if [ "$rc" -ne 0 ] && [ "${SLURM_RESTART_COUNT:-0}" -lt 3 ]; then
  echo "nemorun: step exited with $rc; requeueing job $SLURM_JOB_ID (restart $((${SLURM_RESTART_COUNT:-0} + 1)) of 3)" >&2
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc"
