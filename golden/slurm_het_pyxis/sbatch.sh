#!/bin/bash
# Rendered by nemorun: experiment train_with_server_pyxis/20260101-000000-000000-abcd, allocation pair: a heterogeneous job, one component per task, one step per task (trainer, server).
# Submit: sbatch --parsable /shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair/sbatch.sh

# parameters
#SBATCH --chdir=/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair
#SBATCH --error=/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair/stderr.log
#SBATCH --gpus-per-node=8
#SBATCH --job-name=train_with_server_pyxis-pair
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair/stdout.log
#SBATCH --partition=batch
#SBATCH --requeue
#SBATCH --signal=B:USR1@90
#SBATCH hetjob
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --partition=interactive

set -euo pipefail

# each step's exit status lands in its exit file (what `nemorun exp status` reads). A requeued attempt
# runs every step again, except one cancelled by `nemorun exp cancel ID TASK`: its marker file stays,
# so it stays cancelled (its exit file too, written here if the cancelled attempt ended before it could)
step_names=(trainer server)
step_files=(/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair/exit-trainer.txt /shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair/exit-server.txt)
step_cancelled=(/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair/cancelled-trainer /shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair/cancelled-server)
for i in "${!step_names[@]}"; do
  if [ ! -f "${step_cancelled[$i]}" ]; then
    rm -f "${step_files[$i]}"
  elif [ ! -f "${step_files[$i]}" ]; then
    echo 143 > "${step_files[$i]}"
  fi
done
step_pids=()

# step trainer (component 0): its own environment and rendezvous, in the background
if [ -f "${step_cancelled[0]}" ]; then
  echo "nemorun: step ${step_names[0]} was cancelled (nemorun exp cancel); not running it again" >&2
  step_pids[0]=
else
(
  export NCCL_DEBUG=INFO
  head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST_HET_GROUP_0" | sed -n 1p)
  head_addr=$(scontrol -o show node "$head_node" 2>/dev/null | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p') || head_addr=
  head_node=${head_addr:-$head_node}
  export head_node
  exec srun \
    --error=/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair/stderr-trainer.log \
    --het-group=0 \
    --job-name=trainer \
    --open-mode=append \
    --output=/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair/stdout-trainer.log \
    --container-env=NCCL_DEBUG \
    --container-image='nvcr.io#nvidia/pytorch:24.05-py3' \
    --container-mounts=/data:/data:ro,/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair:/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair \
    --container-workdir=/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair \
    --kill-on-bad-exit=1 \
    --nodes=2 \
    --ntasks=2 \
    --ntasks-per-node=1 \
    --wait=60 \
    bash -c 'torchrun --rdzv-backend c10d --rdzv-endpoint $head_node:29500 --rdzv-id $SLURM_JOB_ID --nnodes 2 --nproc-per-node 8 --node-rank $SLURM_NODEID /shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair/nemorun_entry.py /shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair/function-trainer.yaml'
) &
step_pids[0]=$!
fi

# step server (component 1): its own environment and rendezvous, in the background
if [ -f "${step_cancelled[1]}" ]; then
  echo "nemorun: step ${step_names[1]} was cancelled (nemorun exp cancel); not running it again" >&2
  step_pids[1]=
else
(
  export PORT=8000
  exec srun \
    --error=/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair/stderr-server.log \
    --het-group=1 \
    --job-name=server \
    --open-mode=append \
    --output=/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair/stdout-server.log \
    --container-env=PORT \
    --container-image=python:3.11-slim \
    --container-mounts=/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair:/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair \
    --container-workdir=/shared/nemorun/train_with_server_pyxis/20260101-000000-000000-abcd/pair \
    --kill-on-bad-exit=1 \
    --wait=60 \
    bash -c 'python3 -m http.server $PORT'
) &
step_pids[1]=$!
fi

# wait for every step; the first one that fails stops the others and its status is the job's (a step
# cancelled by `nemorun exp cancel ID TASK`, which leaves its marker file first, is not a failure)
rc=0
stopping=
stop_steps() {
  local pid
  for pid in "${step_pids[@]}"; do
    if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
}
# the time-limit signal (USR1, sent with B:) reaches this script only: stop every step cleanly (srun forwards SIGTERM to
# its tasks; torchrun/ft_launcher stop their workers on it), then requeue below
on_time_limit() {
  stopping=1
  echo "nemorun: SIGUSR1 before the time limit; stopping the steps of job $SLURM_JOB_ID" >&2
  stop_steps
}
trap on_time_limit USR1
running=0
for pid in "${step_pids[@]}"; do
  if [ -n "$pid" ]; then running=$((running + 1)); fi
done
while [ "$running" -gt 0 ]; do
  for i in "${!step_pids[@]}"; do
    pid=${step_pids[$i]}
    if [ -z "$pid" ] || kill -0 "$pid" 2>/dev/null; then continue; fi
    step_rc=0
    wait "$pid" || step_rc=$?
    echo "$step_rc" > "${step_files[$i]}"
    step_pids[i]=
    running=$((running - 1))
    if [ "$step_rc" -ne 0 ] && [ "$rc" -eq 0 ] && [ ! -f "${step_cancelled[$i]}" ]; then
      rc=$step_rc
      if [ "$running" -gt 0 ] && [ -z "$stopping" ]; then
        echo "nemorun: step ${step_names[$i]} exited with $step_rc; stopping the other steps of job $SLURM_JOB_ID" >&2
        stopping=1
        stop_steps
      fi
    fi
  done
  if [ "$running" -gt 0 ]; then sleep 1; fi
done
# An attempt that failed or was stopped by the time-limit signal is requeued whole (same job id, every step again,
# logs appended) until it has been restarted 1 time(s); Slurm counts restarts in SLURM_RESTART_COUNT.
if { [ "$rc" -ne 0 ] || [ -n "$stopping" ]; } && [ "${SLURM_RESTART_COUNT:-0}" -lt 1 ]; then
  echo "nemorun: a step exited with $rc; requeueing job $SLURM_JOB_ID (restart $((${SLURM_RESTART_COUNT:-0} + 1)) of 1)" >&2
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc"
