"""What scheduling a streamed pass through dask costs, side by side with a plain loop.

npeff runs each pass as a dask graph (load and compute tasks per piece, a tree reduction of the
partial sums) on the threaded scheduler. The baseline here is the simplest alternative: a Python
loop over the same pieces that issues the next piece's read (a TensorStore future) before
computing the current one. Both use the same ``chunk_step`` and the same pieces; they alternate,
twice, on one store with a memory budget of a quarter of the data (SST2's r = 2, d = 16384,
C = 512).

    .venv/bin/python bench/stream_schedule.py [--m 30000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def loop_iteration(self, h, m_matrix, joint):
    """The baseline pass: one read ahead, compute in order, partial sums accumulated in place."""
    from npeff.ops import decomposition as module

    cache = self.cache
    pieces = cache.pieces()
    to_read = [p for p in pieces if not p[3] or cache.resident[p[0]] is None]
    pending = {}

    def submit(position):
        if position < len(to_read):
            _, start, stop, _ = to_read[position]
            pending[start] = cache.store._submit_read(start, stop)

    submit(0)
    position = 0
    c, d = h.shape
    t2 = torch.zeros(c, d, dtype=self.dtype)
    wtw = torch.zeros(c, c, dtype=self.dtype)
    loss = torch.zeros((), dtype=torch.float64)
    for shard, start, stop, resident in pieces:
        g = cache.resident.get(shard) if resident else None
        if g is None:
            future = pending.pop(start)
            position += 1
            submit(position)
            g = torch.from_numpy(cache.store._finish_read(future, start, stop))
            if resident:
                g = cache.resident[shard] = module.aligned(g)
        w, t2_c, wtw_c, loss_c = module.chunk_step(g, self.w[start:stop], h, m_matrix, joint,
                                                   cache.constant(start, g))
        if joint:
            self.w[start:stop] = w * self.mask[start:stop, None]
        t2 += t2_c
        wtw += wtw_c
        loss += loss_c
    return t2, wtw, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", type=int, default=30000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--dir", default="bench/results/stream-schedule")
    parser.add_argument("--json")
    args = parser.parse_args()

    from decompose import make_store, npeff_run
    from npeff.ops import decomposition as module

    store = make_store(Path(args.dir) / "store", args.m, 2, 16384)
    budget = args.m * 2 * 16384 * 4 // 4
    shipped = module._LocalRunner.iteration
    steps = {"dask_graph": [], "loop": []}
    try:
        for _ in range(2):
            for name in steps:
                module._LocalRunner.iteration = shipped if name == "dask_graph" else loop_iteration
                steps[name] += list(npeff_run(store, 512, args.steps + 1, memory_budget=budget)[1:])
    finally:
        module._LocalRunner.iteration = shipped
        shutil.rmtree(args.dir, ignore_errors=True)
    result = {"m": args.m, "r": 2, "d": 16384, "C": 512, "budget_GB": budget / 1e9,
              "s_per_iter": {name: float(np.median(times)) for name, times in steps.items()}}
    result["dask_over_loop"] = result["s_per_iter"]["dask_graph"] / result["s_per_iter"]["loop"]
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
