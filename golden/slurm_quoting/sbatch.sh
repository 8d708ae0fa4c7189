#!/bin/bash
# Rendered by nemorun: experiment hello/20260101-000000-000000-abcd, job hello.
# Submit: sbatch --parsable /home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/sbatch.sh

# parameters
#SBATCH --chdir=/work/project
#SBATCH --error=/home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/stderr.log
#SBATCH --job-name=hello
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --output=/home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/stdout.log

set -euo pipefail

# environment
export GREETING='hello $USER'
export MULTI='line1
line2'
export QUOTE='it'"'"'s "quoted"'

# command
srun \
  --kill-on-bad-exit=1 \
  --wait=60 \
  bash scripts/run.sh --name 'two words' '$HOME' 'it'"'"'s' 'a
b' '#notacomment'
