#!/usr/bin/env bash
# Rendered by nemorun: experiment train/20260101-000000-000000-abcd, job train.
set -euo pipefail

cd /home/user/project

# command
python3 /home/user/.run/experiments/train/20260101-000000-000000-abcd/jobs/train/nemorun_entry.py /home/user/.run/experiments/train/20260101-000000-000000-abcd/jobs/train/function.yaml
