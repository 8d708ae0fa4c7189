#!/usr/bin/env bash
# Rendered by nemorun: experiment hello/20260101-000000-000000-abcd, job hello.
set -euo pipefail

cd /home/user/project

# environment
export CUDA_VERSION=12.10
export DEBUG=false
export EMPTY=null

# command
bash run.sh --tag 1.10 --count 007 --flag true --x 1e3 --none null --hex 0x10
