"""Benchmark of the seeded sparse projection (``npeff.cuda_ops.project``).

For each (n, d, R) it times, side by side in one process on the same input:
  * npeff's projection (CPU kernel, and the CUDA kernel when a GPU is present);
  * scikit-learn's SparseRandomProjection at the same density (32/d): the matrix build
    (``fit``) and the transform (``X @ components_.T``) separately, plus the CSR matrix's memory;
  * the other arrangements of the same scipy CSR product, to find the fastest one;
  * one streaming read of the input (``x.sum()``), the bandwidth floor.

Usage:
    python bench/projection.py                      # the full grid of docs/benchmarks.md
    python bench/projection.py --n 20 --d 1024 --rows 1 32 --repeat 3
    python bench/projection.py --no-sklearn --json out.json

Sizes are given as log2(n). Results print as a table (and optionally JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def best_time(fn, repeat):
    best = float("inf")
    result = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def sklearn_build_bytes(n, d):
    """Rough peak memory of scikit-learn's matrix build. At density 32/d >= 0.01 its sampler takes
    each component's indices from a full permutation of n int64 and keeps a view of it, so the
    build holds about d * n * 8 bytes; below that ratio it holds about the matrix itself."""
    if 32 / d >= 0.01:
        return d * n * 8
    return 32 * n * 24


def available_bytes():
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def sklearn_matrix(n, d, seed=0):
    from sklearn.random_projection import SparseRandomProjection

    transformer = SparseRandomProjection(
        n_components=d, density=32 / d, dense_output=True, random_state=seed
    )
    start = time.perf_counter()
    transformer.fit(np.zeros((1, n), dtype=np.float32))
    build = time.perf_counter() - start
    comp = transformer.components_
    nbytes = comp.data.nbytes + comp.indices.nbytes + comp.indptr.nbytes
    return transformer, build, nbytes


def scipy_arrangements(comp, x):
    """The same product ``x @ comp.T`` arranged in the ways scipy can compute it."""
    x_rows_last = np.ascontiguousarray(x.T)
    comp_t_csr = comp.T.tocsr()
    return {
        "X @ C.T (sklearn)": lambda: x @ comp.T,
        "(C @ X.T).T": lambda: (comp @ x_rows_last).T,
        "X @ (C.T as CSR)": lambda: x @ comp_t_csr,
    }


def run_one(n, d, rows, repeat, with_sklearn, sk_cache, backends):
    from npeff.cuda_ops import project

    gen = np.random.default_rng(0)
    x = gen.standard_normal((rows, n), dtype=np.float32)
    in_bytes = x.nbytes
    row = {"n": n, "d": d, "R": rows, "input_MB": in_bytes / 1e6}
    t_read, _ = best_time(lambda: x.sum(), repeat)
    row["read_s"] = t_read
    for backend in backends:
        project(x[:, :1024], d=d, seed=0, n_total=n, backend=backend)  # compile / warm up
        t, _ = best_time(lambda: project(x, d=d, seed=0, n_total=n, backend=backend), repeat)
        row[f"npeff_{backend}_s"] = t
        row[f"npeff_{backend}_rows_per_s"] = rows / t
        row[f"npeff_{backend}_GBps"] = in_bytes / t / 1e9
        row[f"npeff_{backend}_over_read"] = t / t_read
    if with_sklearn and sklearn_build_bytes(n, d) > 0.7 * available_bytes():
        row["sklearn_skipped"] = (f"building scikit-learn's matrix needs about "
                                  f"{sklearn_build_bytes(n, d) / 2**30:.0f} GiB; "
                                  f"{available_bytes() / 2**30:.0f} GiB available")
    elif with_sklearn:
        if (n, d) not in sk_cache:
            sk_cache.clear()  # one matrix in memory at a time
            sk_cache[(n, d)] = sklearn_matrix(n, d)
        transformer, build, nbytes = sk_cache[(n, d)]
        row["sklearn_build_s"] = build
        row["sklearn_matrix_MB"] = nbytes / 1e6
        t_sk, _ = best_time(lambda: transformer.transform(x), repeat)
        row["sklearn_transform_s"] = t_sk
        arrangements = {
            name: best_time(fn, repeat)[0]
            for name, fn in scipy_arrangements(transformer.components_, x).items()
        }
        fastest = min(arrangements, key=arrangements.get)
        row["scipy_fastest"] = fastest
        row["scipy_fastest_s"] = arrangements[fastest]
        row["npeff_cpu_speedup_vs_sklearn"] = t_sk / row["npeff_cpu_s"]
        row["npeff_cpu_speedup_vs_fastest_scipy"] = arrangements[fastest] / row["npeff_cpu_s"]
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[20, 22], help="log2 of n")
    parser.add_argument("--d", type=int, nargs="+", default=[1024, 8192])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()

    from npeff.cuda_ops import cuda_available

    backends = ["cpu"] + (["cuda"] if cuda_available() else [])
    import numba

    print(f"# machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"numba threads {numba.get_num_threads()}, backends {backends}")
    rows_out = []
    sk_cache: dict = {}
    for log_n in args.n:
        for d in args.d:
            for rows in args.rows:
                row = run_one(2**log_n, d, rows, args.repeat, not args.no_sklearn, sk_cache, backends)
                rows_out.append(row)
                print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v)
                                  for k, v in row.items()}), flush=True)
    header = ["n", "d", "R", "read_s", "npeff_cpu_s", "npeff_cpu_GBps", "npeff_cpu_over_read",
              "sklearn_build_s", "sklearn_transform_s", "scipy_fastest_s", "sklearn_matrix_MB",
              "npeff_cpu_speedup_vs_sklearn", "npeff_cpu_speedup_vs_fastest_scipy"]
    if "cuda" in backends:
        header += ["npeff_cuda_s", "npeff_cuda_GBps"]
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows_out:
        cells = []
        for key in header:
            value = row.get(key, "")
            cells.append(f"{value:.3g}" if isinstance(value, float) else str(value))
        print("| " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows_out, f, indent=1)


if __name__ == "__main__":
    main()
