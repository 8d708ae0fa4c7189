#!/usr/bin/env bash
# Rendered by nemorun: experiment hello/20260101-000000-000000-abcd, job hello.
set -euo pipefail

cd /home/user/project

# command
ft_launcher --standalone --nnodes 1 --nproc-per-node 2 --ft-rank-heartbeat-timeout 60.0 --ft-rank-termination-signal SIGKILL --term-timeout 30 --no-python bash -c 'echo "hello from $(hostname) at $(date -u +%FT%TZ)"'
