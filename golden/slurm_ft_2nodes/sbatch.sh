#!/bin/bash
# Rendered by nemorun: experiment hello/20260101-000000-000000-abcd, job hello.
# Submit: sbatch --parsable /shared/nemorun/hello/20260101-000000-000000-abcd/hello/sbatch.sh

# parameters
#SBATCH --chdir=/shared/nemorun/hello/20260101-000000-000000-abcd/hello
#SBATCH --error=/shared/nemorun/hello/20260101-000000-000000-abcd/hello/stderr.log
#SBATCH --gpus-per-node=8
#SBATCH --job-name=hello
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/shared/nemorun/hello/20260101-000000-000000-abcd/hello/stdout.log
#SBATCH --requeue

set -euo pipefail

# launcher rendezvous
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)
head_addr=$(scontrol -o show node "$head_node" 2>/dev/null | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p') || head_addr=
head_node=${head_addr:-$head_node}
export head_node

# command
# ft_launcher (nvidia-resiliency-ext): the workload creates this file when training has finished;
# then the job is not requeued, and a requeued attempt that finds it ends at once
export FAULT_TOL_FINISHED_FLAG_FILE=/shared/nemorun/hello/20260101-000000-000000-abcd/hello/ft_finished.flag
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] && [ -f "$FAULT_TOL_FINISHED_FLAG_FILE" ]; then
  echo "nemorun: training already finished ($FAULT_TOL_FINISHED_FLAG_FILE exists); not running again" >&2
  exit 0
fi
# An attempt that failed without the finished flag is requeued (same job id, logs appended)
# until it has been restarted 2 time(s); Slurm counts restarts in SLURM_RESTART_COUNT.
rc=0
srun \
  --kill-on-bad-exit=1 \
  --nodes=2 \
  --ntasks=2 \
  --ntasks-per-node=1 \
  --wait=60 \
  bash -c 'ft_launcher --rdzv-backend c10d --rdzv-endpoint $head_node:29500 --rdzv-id $SLURM_JOB_ID --nnodes 2 --nproc-per-node 8 --node-rank $SLURM_NODEID --ft-rank-heartbeat-timeout 60.0 --ft-rank-termination-signal SIGKILL train.py --lr 0.1 '"'"'two words'"'"'' || rc=$?
if [ "$rc" -ne 0 ] && [ ! -f "$FAULT_TOL_FINISHED_FLAG_FILE" ] && [ "${SLURM_RESTART_COUNT:-0}" -lt 2 ]; then
  echo "nemorun: step exited with $rc; requeueing job $SLURM_JOB_ID (restart $((${SLURM_RESTART_COUNT:-0} + 1)) of 2)" >&2
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc"
