#!/usr/bin/env bash
# Rendered by nemorun: experiment hello/20260101-000000-000000-abcd, job hello.
set -euo pipefail

cd /home/user/project

# command, re-run up to 2 times after a failure; one line per attempt in /home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/attempts
attempt=0
while :; do
    attempt=$((attempt + 1))
    rc=0
    bash -c 'echo "hello from $(hostname) at $(date -u +%FT%TZ)"' || rc=$?
    printf 'attempt %d exit %d\n' "$attempt" "$rc" >> /home/user/.run/experiments/hello/20260101-000000-000000-abcd/jobs/hello/attempts
    if [ "$rc" -eq 0 ] || [ "$attempt" -gt 2 ]; then
        exit "$rc"
    fi
done
