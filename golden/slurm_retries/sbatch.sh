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
#SBATCH --signal=B:USR1@90

set -euo pipefail

# command
# An attempt that failed or was stopped by the time-limit signal is requeued (same job id, logs appended)
# until it has been restarted 3 time(s); Slurm counts restarts in SLURM_RESTART_COUNT.
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
  --kill-on-bad-exit=1 \
  --wait=60 \
  bash -c 'echo "hello from $(hostname) at $(date -u +%FT%TZ)"' &
step=$!
wait "$step" || rc=$?
# the trapped signal interrupts wait (status 128+n): wait again for the step's own exit status
if [ -n "$stopping" ]; then rc=0; wait "$step" || rc=$?; fi
if { [ "$rc" -ne 0 ] || [ -n "$stopping" ]; } && [ "${SLURM_RESTART_COUNT:-0}" -lt 3 ]; then
  echo "nemorun: step exited with $rc; requeueing job $SLURM_JOB_ID (restart $((${SLURM_RESTART_COUNT:-0} + 1)) of 3)" >&2
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$rc"
