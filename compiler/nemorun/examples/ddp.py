"""A two-line distributed check: every rank joins a gloo process group, sums its rank with all
others (``all_reduce``), and prints what it sees.

Run it under ``launcher=torchrun`` (or ``ft``): each rank prints
``rank=R world_size=W local_rank=L rank_sum=S`` with ``S = W*(W-1)/2`` when the group works.
Needs torch (CPU is enough); imported lazily so nemorun itself never needs it.
"""
from __future__ import annotations

import os
import socket
import sys


def report(backend: str = "gloo") -> int:
    import torch
    import torch.distributed as dist

    dist.init_process_group(backend=backend)
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        value = torch.tensor([float(rank)])
        dist.all_reduce(value)
        # one write per line: ranks share stdout, and print() writes text and newline separately
        sys.stdout.write(
            f"rank={rank} world_size={world} local_rank={os.environ.get('LOCAL_RANK')} "
            f"rank_sum={int(value.item())} host={socket.gethostname()}\n"
        )
        sys.stdout.flush()
        return 0 if int(value.item()) == world * (world - 1) // 2 else 1
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(report())
