"""A pure-Python training run: fits y = 3x - 1 by SGD on a fixed data set, on a CPU.

It exists so ``task=train`` runs anywhere nemorun is installed, in about a second, and prints
something worth looking at (a loss per step), without torch.
"""
from __future__ import annotations

import os
import random
import time


def train(steps: int = 20, lr: float = 0.1, seed: int = 0, sleep: float = 0.02) -> int:
    rng = random.Random(seed)
    data = [(x, 3.0 * x - 1.0 + rng.gauss(0, 0.05)) for x in (i / 50.0 for i in range(-50, 51))]
    w, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
    rank = os.environ.get("RANK", "0")
    for step in range(1, steps + 1):
        gw = gb = loss = 0.0
        for x, y in data:
            err = w * x + b - y
            loss += err * err
            gw += 2 * err * x
            gb += 2 * err
        n = len(data)
        w -= lr * gw / n
        b -= lr * gb / n
        print(f"rank={rank} step={step} loss={loss / n:.6f}", flush=True)
        if sleep:
            time.sleep(sleep)
    print(f"rank={rank} done: w={w:.4f} b={b:.4f}", flush=True)
    return 0
