#!/usr/bin/env bash
# Rendered by nemorun: experiment hello/20260101-000000-000000-abcd, job hello.
set -euo pipefail

cd /home/user/project

# environment
export GREETING='hello $USER'
export MULTI='line1
line2'
export NCCL_DEBUG=INFO

# command
bash scripts/run.sh --name 'two words' '$HOME' 'it'"'"'s'
