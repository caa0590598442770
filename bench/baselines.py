"""Benchmark of the paper's baselines over stores: a k-means pass against an NPEFF pass on the same
gradient store (the same GEMM shape, ``G Hᵀ`` with r = 1), streamed and resident, and the TopK SAE's
steps/s, side by side in one run.

Usage:
    python bench/baselines.py                                   # m=16384, d=4096, K=C=128; SAE d=576
    python bench/baselines.py --m 16384 --d 4096 --components 128 --sae-latents 2048 --device cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_store_helpers import rank1_store  # noqa: E402


def activation_store(path: Path, m: int, d: int, seed: int = 1):
    from npeff.store import create_store

    rng = np.random.default_rng(seed)
    writer = create_store(path, rank=1, dim=d, projection={"kind": "none"}, kind="activation")
    rows = rng.standard_normal((m, 1, d)).astype(np.float32)
    writer.append(rows / np.linalg.norm(rows, axis=2, keepdims=True))
    return writer.finalize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=16384)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--components", type=int, default=128)
    parser.add_argument("--passes", type=int, default=6)
    parser.add_argument("--sae-d", type=int, default=576, help="activation width (SmolLM2-135M: 576)")
    parser.add_argument("--sae-latents", type=int, default=2048)
    parser.add_argument("--sae-k", type=int, default=32)
    parser.add_argument("--sae-batch", type=int, default=4096)
    parser.add_argument("--sae-steps", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from npeff.ops import decompose
    from npeff.ops.baselines import cluster, train_sae

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"device {args.device}")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        store = rank1_store(Path(scratch) / "g", args.m, args.d)
        gb = args.m * args.d * 4 / 1e9
        print(f"gradient store: m={args.m}, d={args.d} ({gb:.2f} GB); K = C = {args.components}")
        for label, budget in (("resident", None), ("streamed", 1)):
            npeff = decompose(store, args.components, warmup_steps=0, joint_steps=args.passes, device=args.device,
                              memory_budget=budget)
            kmeans = cluster(store, args.components, iterations=args.passes, device=args.device, memory_budget=budget)
            npeff_s = float(np.median(npeff["step_seconds"][1:]))
            kmeans_s = float(np.median(kmeans["step_seconds"][1:]))
            results[label] = {"npeff_pass_s": npeff_s, "kmeans_pass_s": kmeans_s, "ratio": kmeans_s / npeff_s}
            print(f"{label:>8}: k-means pass {kmeans_s:.3f} s, NPEFF pass {npeff_s:.3f} s "
                  f"(k-means / NPEFF = {kmeans_s / npeff_s:.2f}); medians of {args.passes - 1} passes", flush=True)
        acts = activation_store(Path(scratch) / "a", max(args.sae_batch * 2, 8192), args.sae_d)
        start = time.perf_counter()
        sae = train_sae(acts, args.sae_latents, k=args.sae_k, batch_size=args.sae_batch, steps=args.sae_steps,
                        device=args.device)
        total = time.perf_counter() - start
        results["sae"] = {"steps_per_second": sae["steps_per_second"], "d": args.sae_d, "latents": args.sae_latents,
                          "k": args.sae_k, "batch": args.sae_batch, "total_s": total}
        flops = 2 * 2 * args.sae_batch * args.sae_d * args.sae_latents * 3  # encoder + decoder, forward + backward
        print(f"SAE: {sae['steps_per_second']:.2f} steps/s (d={args.sae_d}, C={args.sae_latents}, k={args.sae_k}, "
              f"batch {args.sae_batch}; about {flops * sae['steps_per_second'] / 1e9:.1f} GFLOP/s dense-equivalent)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
