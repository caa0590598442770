"""Benchmark of ``npeff perturb`` on the demo: evaluation examples/s, and the KL ratios against μ.

Builds ``npeff demo --quick`` in a temporary folder (or uses ``--demo DIR`` made by ``npeff demo``),
then, in one run:

1. **Evaluation throughput**: forward passes of the store's task formulation over the baseline
   examples, unperturbed and inside the ±δ context (the parameters moved and restored), at each
   ``--batch-size``: examples/s, and the ratio of perturbed to unperturbed time (the cost of moving
   and restoring the parameters).
2. **Reconstruction and selectivity against μ** (paper units, ``convention="paper"``): for each
   ``--mu``, ``perturb()`` over all components with the default target KL; FPC seconds and steps
   per component, whether FPC's stopping rule held, non-zeros of ``u``, and the geometric-mean KL
   and norm ratios.

Usage:
    python bench/perturb.py                          # quick demo, mu = 4e-5 (the paper's), 1e-3, 1e-2
    python bench/perturb.py --demo npeff-demo --mu 4e-5 --batch-size 16 64 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def evaluation_throughput(store, batch_sizes, repeats=2):
    """Examples/s of the KL evaluation's forward passes, unperturbed and perturbed."""
    import torch

    from npeff.ops.pef import load_model_and_tokenizer
    from npeff.ops.perturb import PerturbSettings, Perturber
    from npeff.ops.perturb.apply import perturbed

    formulation = store.manifest["pef_spec"]["formulation"]
    model, tokenizer = load_model_and_tokenizer(store.manifest["model"]["name"], formulation, device="cpu")
    rows = []
    for batch_size in batch_sizes:
        perturber = Perturber(model, tokenizer, store, PerturbSettings(batch_size=batch_size))
        indices = [int(i) for i in perturber.baseline]
        u = torch.from_numpy(np.random.default_rng(0).standard_normal(perturber.layout.n_total))
        perturber.log_probs(indices[:batch_size])  # warm-up
        plain, moved = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            perturber.log_probs(indices)
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            with perturbed(model, perturber.layout, u, 0.01 * perturber.theta_norm):
                perturber.log_probs(indices)
            moved.append(time.perf_counter() - start)
        row = dict(batch_size=batch_size, examples=len(indices), plain_s=min(plain), perturbed_s=min(moved))
        row["examples_per_s"] = len(indices) / row["plain_s"]
        row["perturbed_examples_per_s"] = len(indices) / row["perturbed_s"]
        rows.append(row)
        print(f"batch {batch_size:>4}: {row['examples_per_s']:8.1f} examples/s unperturbed, "
              f"{row['perturbed_examples_per_s']:8.1f} perturbed ({len(indices)} examples; "
              f"perturbed/unperturbed time {row['perturbed_s'] / row['plain_s']:.2f})", flush=True)
    return rows


def selectivity_against_mu(decomposition, store, mus, baseline):
    from npeff.ops.perturb import PerturbSettings, perturb

    rows = []
    for mu in mus:
        start = time.perf_counter()
        summary = perturb(decomposition, store=store, settings=PerturbSettings(mu=mu, baseline=baseline))
        seconds = time.perf_counter() - start
        records = summary["components"]
        reconstruction = summary["reconstruction"] or {}
        row = dict(mu=mu, seconds=seconds, n_components=len(records),
                   kl_ratio_geomean=summary["kl_ratio_geomean"], norm_ratio_geomean=summary["norm_ratio_geomean"],
                   mu_effective=reconstruction.get("mu_effective"),
                   fpc_iterations_mean=float(np.mean([r["fpc_iterations"] for r in records])),
                   fpc_capped=sum(r["fpc_iterations"] >= reconstruction.get("max_iterations", 1000) for r in records),
                   u_nonzero_median=float(np.median([r["u_nonzero"] for r in records])),
                   n=reconstruction.get("n"), above_1_5=sum((r["kl_ratio"] or 0) > 1.5 for r in records))
        rows.append(row)
        print(f"mu {mu:>7.0e} (npeff units {row['mu_effective']:.2e}): KL ratio {row['kl_ratio_geomean']:.2f}, "
              f"norm ratio {row['norm_ratio_geomean']:.2f}, {row['above_1_5']}/{len(records)} above 1.5; "
              f"FPC steps {row['fpc_iterations_mean']:.0f} on average ({row['fpc_capped']} at the cap), "
              f"u non-zeros median {row['u_nonzero_median']:.0f} of n = {row['n']}; "
              f"{seconds / len(records):.1f} s/component", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", default=None, help="a folder made by npeff demo (default: a fresh --quick demo)")
    parser.add_argument("--mu", type=float, nargs="+", default=[4e-5, 1e-3, 1e-2])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--baseline", type=int, default=400)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    from npeff.store import open_decomposition, open_store

    warnings.filterwarnings("ignore", "npeff.cuda_ops. no CUDA GPU available")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as scratch:
        demo = Path(args.demo) if args.demo else Path(scratch) / "demo"
        if args.demo is None:
            from npeff.ops.demo.pipeline import DemoSettings, run_demo

            start = time.perf_counter()
            run_demo(demo, DemoSettings.quick())
            print(f"built the quick demo in {time.perf_counter() - start:.1f} s")
        decomposition = open_decomposition(demo / "decomposition")
        store = open_store(demo / "store")
        print(f"store: {store.num_examples} examples, d = {store.dim}, "
              f"n = {store.manifest['parameter_layout']['n_total']}; {decomposition.H.shape[0]} components")
        results = {"evaluation": evaluation_throughput(store, args.batch_size),
                   "selectivity": selectivity_against_mu(decomposition, store, args.mu, args.baseline)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
