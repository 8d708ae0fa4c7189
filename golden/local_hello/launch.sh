#!/usr/bin/env bash
# Rendered by nemorun: experiment hello/20260101-000000-000000-abcd, job hello.
set -euo pipefail

cd /home/user/project

# command
bash -c 'echo "hello from $(hostname) at $(date -u +%FT%TZ)"'
