"""Cost of subnormal coefficients in the decomposition, side by side on the demo's store.

The multiplicative W update drives unused coefficients towards zero; once they are subnormal
floats, every product with W is far slower on x86 CPUs. npeff sets coefficients below the dtype's
smallest normal number to zero. This runs the demo's decomposition twice in one process, with
that flush (as shipped) and without it, and reports seconds per step over the joint phase.

    .venv/bin/python bench/subnormal.py [--out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch


def unflushed_update(w, n, m):
    """The update without the flush (what npeff did before)."""
    from npeff.ops.decomposition.algorithm import _TINY

    return w * n / (w @ m).clamp_min(_TINY)


def run(store, settings, *, flush: bool) -> dict:
    from npeff.ops import decompose
    from npeff.ops.decomposition import algorithm

    shipped = algorithm.coefficient_update
    if not flush:
        algorithm.coefficient_update = unflushed_update
    try:
        began = time.perf_counter()
        result = decompose(store, settings.n_components, warmup_steps=settings.warmup_steps,
                           joint_steps=settings.joint_steps, warmup_lr=settings.warmup_lr,
                           joint_lr=settings.joint_lr, seed=settings.seed)
        total = time.perf_counter() - began
    finally:
        algorithm.coefficient_update = shipped
    joint = np.asarray(result["step_seconds"][settings.warmup_steps:])
    W = result["W"]
    return {"flush": flush, "total_s": total, "joint_median_step_s": float(np.median(joint)),
            "joint_last100_median_step_s": float(np.median(joint[-100:])),
            "final_loss": float(result["losses"][-1]), "zero_fraction": float((W == 0).mean()), "W": W}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results/subnormal-demo", help="Where the demo's store is made.")
    parser.add_argument("--json", default=None, help="Write the figures here too.")
    args = parser.parse_args()

    from npeff.ops.analysis import similarity_score
    from npeff.ops.demo.pipeline import DemoSettings, run_demo
    from npeff.store import open_store

    settings = DemoSettings()
    out = Path(args.out)
    if not (out / "store" / "manifest.json").is_file():
        run_demo(out, settings, overwrite=True)
    store = open_store(out / "store")
    flushed = run(store, settings, flush=True)
    unflushed = run(store, settings, flush=False)
    figures = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "torch_threads": torch.get_num_threads(),
        "m": store.num_examples, "r": store.rank, "d": store.dim, "C": settings.n_components,
        "steps": settings.warmup_steps + settings.joint_steps,
        "with_flush": {k: v for k, v in flushed.items() if k != "W"},
        "without_flush": {k: v for k, v in unflushed.items() if k != "W"},
        "total_ratio": unflushed["total_s"] / flushed["total_s"],
        "joint_step_ratio": unflushed["joint_median_step_s"] / flushed["joint_median_step_s"],
        "coefficient_similarity": similarity_score(flushed["W"], unflushed["W"]),
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
