#!/usr/bin/env bash
# Rendered by nemorun: experiment ddp/20260101-000000-000000-abcd, job ddp.
set -euo pipefail

cd /home/user/project

# command
python3 -m torch.distributed.run --standalone --nnodes 1 --nproc-per-node 2 /home/user/.run/experiments/ddp/20260101-000000-000000-abcd/jobs/ddp/nemorun_entry.py /home/user/.run/experiments/ddp/20260101-000000-000000-abcd/jobs/ddp/function.yaml
