#!/usr/bin/env bash
# Rendered by nemorun: experiment hello/20260101-000000-000000-abcd, job hello.
set -euo pipefail

cd /home/user/project

# command
python3 -m torch.distributed.run --standalone --nnodes 1 --nproc-per-node 4 --max-restarts 3 --tee 3 --local-ranks-filter=0 train.py --lr 0.1
