"""Benchmark of the FPC reconstruction (``npeff.ops.perturb.reconstruct``) against n.

For each log2(n), plants a sparse parameter vector (``--nonzeros`` entries of magnitude 0.5..1.5),
projects it with ssp-v1 to ``d`` dimensions and times ``reconstruct`` with the paper's settings
(beta=4, gamma=0.99, tau from equation 73, one inner iteration, FPC's xtol=1e-4, at most 1000
steps) at the given μ values. Prints seconds per component, milliseconds per step (one ``A`` and
one ``Aᵀ``, operator calls / 2, which include the 20 Lanczos steps), steps, operator calls, σ², whether
the stopping rule held, and the support recall and relative error against the planted vector.

Usage:
    python bench/fpc.py                             # n = 2^18, 2^20, 2^22; d = 8192
    python bench/fpc.py --n 18 20 --d 8192 --mu 4e-5 1e-2 --device cpu --json out.json
    python bench/fpc.py --convention npeff          # mu for npeff's A and h as they are
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import numpy as np


def planted(n, k, seed):
    rng = np.random.default_rng(seed)
    u = np.zeros(n, dtype=np.float32)
    support = rng.choice(n, k, replace=False)
    u[support] = rng.choice([-1.0, 1.0], k) * (0.5 + rng.random(k))
    return u, support


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[18, 20, 22], help="log2(n) values")
    parser.add_argument("--d", type=int, default=8192)
    parser.add_argument("--mu", type=float, nargs="+", default=[4e-5, 1e-2])
    parser.add_argument("--nonzeros", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-iterations", type=int, default=1000)
    parser.add_argument("--convention", choices=["paper", "npeff"], default="paper",
                        help="mu's units: the paper's (unit-norm h, +-1 entries) or npeff's A and h as they are")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    from npeff.cuda_ops import project
    from npeff.ops.perturb import reconstruct

    warnings.filterwarnings("ignore", "npeff.cuda_ops. no CUDA GPU available")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, device {args.device}")
    projection = {"kind": "ssp-v1", "seed": 0, "d": args.d}
    rows = []
    header = f"{'n':>9} {'d':>6} {'mu':>8} {'s/comp':>8} {'ms/step':>8} {'steps':>6} {'calls':>6} {'sigma2':>8} " \
             f"{'conv':>5} {'recall':>6} {'relerr':>7}"
    print(header)
    for log_n in args.n:
        n = 1 << log_n
        u_true, support = planted(n, args.nonzeros, log_n)
        h = project(u_true, d=args.d, seed=0, n_total=n, backend="auto")
        reconstruct(h, projection=projection, n=n, mu=1.0, device=args.device, max_iterations=2)  # warm-up
        for mu in args.mu:
            start = time.perf_counter()
            result = reconstruct(h, projection=projection, n=n, mu=mu, device=args.device,
                                 max_iterations=args.max_iterations, convention=args.convention)
            seconds = time.perf_counter() - start
            u = result.u.double().cpu().numpy()
            found = np.argsort(-np.abs(u))[: len(support)]
            recall = len(set(found) & set(support)) / len(support)
            relerr = float(np.linalg.norm(u - u_true) / np.linalg.norm(u_true))
            row = dict(n=n, d=args.d, mu=mu, seconds=seconds, iterations=result.iterations,
                       operator_calls=result.settings["operator_calls"], sigma2=result.sigma2,
                       converged=result.converged, recall=recall, relative_error=relerr)
            rows.append(row)
            per_step = 1e3 * seconds / (row["operator_calls"] / 2)
            print(f"{n:>9} {args.d:>6} {mu:>8.0e} {seconds:>8.2f} {per_step:>8.1f} {result.iterations:>6} "
                  f"{row['operator_calls']:>6} {result.sigma2:>8.1f} {str(result.converged):>5} "
                  f"{recall:>6.2f} {relerr:>7.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
