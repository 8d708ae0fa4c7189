#!/bin/bash
# Rendered by nemorun: experiment packed_seeds/20260101-000000-000000-abcd, allocation node: a job group, one allocation, one step per task (seed0, seed1).
# Submit: sbatch --parsable /home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/sbatch.sh

# parameters
#SBATCH --chdir=/home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node
#SBATCH --error=/home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/stderr.log
#SBATCH --job-name=packed_seeds-node
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --output=/home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/stdout.log
#SBATCH --time=00:10:00

set -euo pipefail

# each step's exit status lands in its exit file (what `nemorun exp status` reads). A requeued attempt
# runs every step again, except one cancelled by `nemorun exp cancel ID TASK`: its marker file stays,
# so it stays cancelled (its exit file too, written here if the cancelled attempt ended before it could)
step_names=(seed0 seed1)
step_files=(/home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/exit-seed0.txt /home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/exit-seed1.txt)
step_cancelled=(/home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/cancelled-seed0 /home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/cancelled-seed1)
for i in "${!step_names[@]}"; do
  if [ ! -f "${step_cancelled[$i]}" ]; then
    rm -f "${step_files[$i]}"
  elif [ ! -f "${step_files[$i]}" ]; then
    echo 143 > "${step_files[$i]}"
  fi
done
step_pids=()

# step seed0: its own environment and rendezvous, in the background
if [ -f "${step_cancelled[0]}" ]; then
  echo "nemorun: step ${step_names[0]} was cancelled (nemorun exp cancel); not running it again" >&2
  step_pids[0]=
else
(
  exec srun \
    --error=/home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/stderr-seed0.log \
    --job-name=seed0 \
    --output=/home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/stdout-seed0.log \
    --overlap \
    --kill-on-bad-exit=1 \
    --wait=60 \
    python /home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/nemorun_entry.py /home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/function-seed0.yaml
) &
step_pids[0]=$!
fi

# step seed1: its own environment and rendezvous, in the background
if [ -f "${step_cancelled[1]}" ]; then
  echo "nemorun: step ${step_names[1]} was cancelled (nemorun exp cancel); not running it again" >&2
  step_pids[1]=
else
(
  exec srun \
    --error=/home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/stderr-seed1.log \
    --job-name=seed1 \
    --output=/home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/stdout-seed1.log \
    --overlap \
    --kill-on-bad-exit=1 \
    --wait=60 \
    python /home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/nemorun_entry.py /home/user/.run/experiments/packed_seeds/20260101-000000-000000-abcd/jobs/node/function-seed1.yaml
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
exit "$rc"
