#!/bin/bash
# Rendered by nemorun: experiment train/20260101-000000-000000-abcd, job train.
# Submit: sbatch --parsable /shared/nemorun/train/20260101-000000-000000-abcd/train/sbatch.sh

# parameters
#SBATCH --error=/shared/nemorun/train/20260101-000000-000000-abcd/train/stderr.log
#SBATCH --gpus-per-node=8
#SBATCH --job-name=train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/shared/nemorun/train/20260101-000000-000000-abcd/train/stdout.log
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
#SBATCH --time=04:00:00

set -euo pipefail

# launcher rendezvous
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)
head_addr=$(scontrol -o show node "$head_node" 2>/dev/null | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p') || head_addr=
head_node=${head_addr:-$head_node}
export head_node

# command
# ft_launcher (nvidia-resiliency-ext): the workload creates this file when training has finished;
# then the job is not requeued, and a requeued attempt that finds it ends at once
export FAULT_TOL_FINISHED_FLAG_FILE=/shared/nemorun/train/20260101-000000-000000-abcd/train/ft_finished.flag
if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] && [ -f "$FAULT_TOL_FINISHED_FLAG_FILE" ]; then
  echo "nemorun: training already finished ($FAULT_TOL_FINISHED_FLAG_FILE exists); not running again" >&2
  exit 0
fi
# An attempt that failed or was stopped by the time-limit signal without the finished flag is requeued (same job id, logs appended)
# until it has been restarted 2 time(s); Slurm counts restarts in SLURM_RESTART_COUNT.
rc=0
# the time-limit signal (USR1, sent with B:) reaches this script only: stop the step cleanly (srun forwards SIGTERM to
# its tasks; torchrun/ft_launcher stop their workers on it), then requeue below
stopping=
step=
on_time_limit() {
  stopping=1
  echo "nemorun: SIGUSR1 before the time limit; stopping step of job $SLURM_JOB_ID" >&2
  if [ -n "$step" ]; then kill -TERM "$step" 2>/dev/null || true; fi
}
trap on_time_limit USR1
srun \
  --container-env=FAULT_TOL_FINISHED_FLAG_FILE \
  --container-image='nvcr.io#nvidia/pytorch:24.05-py3' \
  --container-mounts=/shared/nemorun/train/20260101-000000-000000-abcd/train:/shared/nemorun/train/20260101-000000-000000-abcd/train \
  --container-workdir=/shared/nemorun/train/20260101-000000-000000-abcd/train \
  --kill-on-bad-exit=1 \
  --nodes=2 \
  --ntasks=2 \
  --ntasks-per-node=1 \
  --wait=60 \
  bash -c 'ft_launcher --rdzv-backend c10d --rdzv-endpoint $head_node:29500 --rdzv-id $SLURM_JOB_ID --nnodes 2 --nproc-per-node 8 --node-rank $SLURM_NODEID --ft-ignore-missing-cfg /shared/nemorun/train/20260101-000000-000000-abcd/train/nemorun_entry.py /shared/nemorun/train/20260101-000000-000000-abcd/train/function.yaml' &
step=$!
wait "$step" || rc=$?
# the trapped signal interrupts wait (status 128+n): wait again for the step's own exit status
if [ -n "$stopping" ]; then rc=0; wait "$step" || rc=$?; fi
if { [ "$rc" -ne 0 ] || [ -n "$stopping" ]; } && [ ! -f "$FAULT_TOL_FINISHED_FLAG_FILE" ] && [ "${SLURM_RESTART_COUNT:-0}" -lt 2 ]; then
  echo "nemorun: step exited with $rc; requeueing job $SLURM_JOB_ID (restart $((${SLURM_RESTART_COUNT:-0} + 1)) of 2)" >&2
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc"
