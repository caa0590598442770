"""Benchmark of the sparse eigendecomposition (``npeff sed``): its steps/s at several batch sizes
against one NPEFF step on the same divergence store with as many components (the same GEMM shapes,
``G Uᵀ`` and ``G Hᵀ`` with r = 1), side by side in one run, resident and streamed.

An SED step touches B examples (``codes = g Uᵀ``, ``g - codes U`` and their gradients: about 3 GEMMs
of ``B × d × K`` forward and backward); an NPEFF step passes over all m. The ratio that matters is
the time per example.

Usage:
    python bench/sed.py                                  # m=16384, d=4096, K=C=128, batches 256 and 4096
    python bench/sed.py --m 16384 --d 4096 --components 128 --batches 256 4096 --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_store_helpers import rank1_store  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=16384)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--components", type=int, default=128)
    parser.add_argument("--passes", type=int, default=6, help="NPEFF steps timed (the first is left out)")
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--steps", type=int, default=60, help="SED steps timed per batch size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from npeff.ops import decompose
    from npeff.ops.decomposition.sed import sparse_eigendecomposition

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"device {args.device}")
    results = {"m": args.m, "d": args.d, "components": args.components, "device": args.device}
    with tempfile.TemporaryDirectory() as scratch:
        store = rank1_store(Path(scratch) / "div", args.m, args.d, kind="divergence", unit=False)
        print(f"divergence store: m={args.m}, d={args.d} ({args.m * args.d * 4 / 1e9:.2f} GB); K = C = {args.components}")
        for label, budget in (("resident", None), ("streamed", 1)):
            npeff = decompose(store, args.components, warmup_steps=0, joint_steps=args.passes, device=args.device,
                              memory_budget=budget)
            npeff_s = float(np.median(npeff["step_seconds"][1:]))
            row = {"npeff_step_s": npeff_s, "npeff_us_per_example": 1e6 * npeff_s / args.m, "sed": {}}
            print(f"{label:>8}: NPEFF step {npeff_s:.3f} s ({row['npeff_us_per_example']:.1f} µs/example; "
                  f"median of {args.passes - 1})", flush=True)
            for batch in args.batches:
                sed = sparse_eigendecomposition(store, args.components, steps=args.steps, batch_size=batch,
                                                device=args.device, memory_budget=budget)
                step_s = 1 / sed["steps_per_second"]
                per_example = 1e6 * step_s / batch
                row["sed"][batch] = {"steps_per_second": sed["steps_per_second"], "step_s": step_s,
                                     "us_per_example": per_example,
                                     "per_example_vs_npeff": per_example / row["npeff_us_per_example"],
                                     "steps_per_npeff_step": npeff_s / step_s}
                print(f"          SED batch {batch:>5}: {sed['steps_per_second']:7.1f} steps/s "
                      f"({per_example:.1f} µs/example, {per_example / row['npeff_us_per_example']:.2f}x NPEFF's; "
                      f"{npeff_s / step_s:.1f} SED steps in the time of one NPEFF step)", flush=True)
            results[label] = row
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
