"""What scheduling a streamed pass through dask costs, side by side with a plain loop.

npeff runs each pass as a dask graph (load and compute tasks per piece, a tree reduction of the
partial sums) on the threaded scheduler. The baseline here is the simplest alternative: a Python
loop over the same pieces that loads the next piece on another thread (one read-ahead future)
while computing the current one. Both run NPEFF's joint-step chunk step through the same
``LocalRunner`` (only its ``schedule`` differs) on one store with a memory budget of a quarter of
the data (SST2's r = 2, d = 16384, C = 512); they alternate, twice.

    .venv/bin/python bench/stream_schedule.py [--m 30000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def loop_schedule(pieces, load, compute, combine):
    """The baseline pass: one read ahead, compute in order, partial sums combined in place."""
    with ThreadPoolExecutor(1) as reader:
        pending = reader.submit(load, pieces[0])
        total = None
        for position, piece in enumerate(pieces):
            g = pending.result()
            if position + 1 < len(pieces):
                pending = reader.submit(load, pieces[position + 1])
            partials = compute(piece, g)
            total = partials if total is None else combine(total, partials)
    return total


def time_passes(store, schedule, *, n_components: int, passes: int, budget: int) -> list[float]:
    """Seconds of each joint pass after the first (which fills the resident shards)."""
    from npeff.ops.decomposition import algorithm
    from npeff.ops.stream import LocalRunner, ok_mask

    mask = ok_mask(store)
    w, h = algorithm.initial_state(n_components, store.num_examples, store.dim, mask, seed=0)
    h = h.float()
    runner = LocalRunner(store, dtype=torch.float32, memory_budget=budget, schedule=schedule,
                         reserved_bytes=algorithm.W_FOOTPRINT * store.num_examples * n_components * 4)
    seconds = []
    try:
        runner.start({"W": w.float(), "mask": mask})
        for _ in range(passes + 1):
            began = time.perf_counter()
            hht, m = algorithm.gram_terms(h)
            h = algorithm.h_update(h, runner.run_pass(algorithm.chunk_step, h, m, True), hht, 1e-6)
            seconds.append(time.perf_counter() - began)
    finally:
        runner.close()
    return seconds[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", type=int, default=30000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--dir", default="bench/results/stream-schedule")
    parser.add_argument("--json")
    args = parser.parse_args()

    from decompose import make_store

    from npeff.ops.stream import PassScheduler

    store = make_store(Path(args.dir) / "store", args.m, 2, 16384)
    budget = args.m * 2 * 16384 * 4 // 4
    steps = {"dask_graph": [], "loop": []}
    try:
        with PassScheduler() as dask_graph:
            for _ in range(2):
                for name, schedule in (("dask_graph", dask_graph), ("loop", loop_schedule)):
                    steps[name] += time_passes(store, schedule, n_components=512, passes=args.steps, budget=budget)
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)
    result = {"m": args.m, "r": 2, "d": 16384, "C": 512, "budget_GB": budget / 1e9,
              "s_per_iter": {name: float(np.median(times)) for name, times in steps.items()}}
    result["dask_over_loop"] = result["s_per_iter"]["dask_graph"] / result["s_per_iter"]["loop"]
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
