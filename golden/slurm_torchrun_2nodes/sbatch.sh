#!/bin/bash
# Rendered by nemorun: experiment ddp/20260101-000000-000000-abcd, job ddp.
# Submit: sbatch --parsable /home/user/.run/experiments/ddp/20260101-000000-000000-abcd/jobs/ddp/sbatch.sh

# parameters
#SBATCH --chdir=/home/user/.run/experiments/ddp/20260101-000000-000000-abcd/jobs/ddp
#SBATCH --error=/home/user/.run/experiments/ddp/20260101-000000-000000-abcd/jobs/ddp/stderr.log
#SBATCH --job-name=ddp
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --output=/home/user/.run/experiments/ddp/20260101-000000-000000-abcd/jobs/ddp/stdout.log
#SBATCH --partition=batch
#SBATCH --time=00:10:00

set -euo pipefail

# launcher rendezvous
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)
head_addr=$(scontrol -o show node "$head_node" 2>/dev/null | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p') || head_addr=
head_node=${head_addr:-$head_node}
export head_node

# command
srun \
  --kill-on-bad-exit=1 \
  --nodes=2 \
  --ntasks=2 \
  --ntasks-per-node=1 \
  --wait=60 \
  bash -c 'torchrun --rdzv-backend c10d --rdzv-endpoint $head_node:29500 --rdzv-id $SLURM_JOB_ID --nnodes 2 --nproc-per-node 2 --node-rank $SLURM_NODEID --max-restarts 1 /home/user/.run/experiments/ddp/20260101-000000-000000-abcd/jobs/ddp/nemorun_entry.py /home/user/.run/experiments/ddp/20260101-000000-000000-abcd/jobs/ddp/function.yaml'
