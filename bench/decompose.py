"""Benchmark of the streaming NPEFF decomposition.

Parts (all CPU here; add --device cuda on a GPU machine):

* ``inmemory``: every chunk resident; time per iteration against a naive two-pass in-memory torch
  implementation (pass 1: B and the W update; pass 2: B again and the H step) on the same data,
  and against Algorithm 1 as the paper writes it (B once: the same two big GEMMs as npeff), the
  three alternating in rounds (``--rounds``) and the steps pooled. ``--shape`` picks the shape:
  ``wide`` (the default: m = ``--m`` = 20000, r = 4, d = 4096, C = 128) or ``digits`` (sklearn's
  digits: m = 1797, r = 10, d = 2410, C = 32, where a step is tens of milliseconds).
* ``linear``: time per iteration at m, 2m, 4m (in memory).
* ``outofcore``: a store 4x the memory budget; peak RSS (fresh process) and time per iteration,
  against reading the store's bytes once and against the all-resident compute time.
* ``cluster``: ``--cluster local:2`` against one process on the same cores.
* ``sst2`` (not run by default; ~8 GB of disk and RAM): the paper's SST2 size, all resident and
  with a budget of a quarter of the data, against the FLOP bound at the measured GEMM rate
  (``--parts sst2 --device cuda`` on a GPU machine).

Time per iteration: npeff's own per-step timings (median of the steps after the first, which also
loads the resident chunks); the naive implementation's median over the same number of steps.

Usage:
    python bench/decompose.py                    # all parts
    python bench/decompose.py --parts inmemory linear
    python bench/decompose.py --parts inmemory --shape digits --steps 20 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def make_store(path, m, r, d, seed=0, shard_examples=None):
    from npeff.store import create_store

    gen = np.random.default_rng(seed)
    writer = create_store(path, rank=r, dim=d, projection={"kind": "external"}, overwrite=True,
                          shard_examples=shard_examples, normalized=True)
    step = 1024
    for start in range(0, m, step):
        g = gen.standard_normal((min(step, m - start), r, d), dtype=np.float32)
        g /= np.sqrt(np.linalg.norm(g @ g.transpose(0, 2, 1), axis=(1, 2)))[:, None, None]
        writer.append(g)
    return writer.finalize()


def per_iteration(run, steps):
    """Median seconds per step after the first; ``run(k)`` returns per-step seconds or None."""
    times = run(steps + 1)
    return float(np.median(times[1:]))


def npeff_run(store, c, steps, **kwargs):
    from npeff.ops import decompose

    return decompose(store, c, warmup_steps=0, joint_steps=steps, joint_lr=1e-4, **kwargs)["step_seconds"]


def naive_iteration(g, w, h, lr=1e-4):
    """Two passes over the in-memory G: W update, then H step (B computed again)."""
    m, r, d = g.shape
    flat = g.reshape(m * r, d)
    hh = h @ h.T
    b = (flat @ h.T).reshape(m, r, -1)                       # pass 1
    n = (b * b).sum(1)
    w = w * n / (w @ (hh * hh))
    b = (flat @ h.T).reshape(m, r, -1)                       # pass 2
    t2 = -4 * ((w[:, None, :] * b).reshape(m * r, -1).T @ flat)
    t1 = 4 * ((w.T @ w) * hh) @ h
    return w, h - lr * (t1 + t2)


def naive_one_pass_iteration(g, w, h, lr=1e-4):
    """Algorithm 1 as the paper writes it, in memory: B once, the W update, then the H step."""
    m, r, d = g.shape
    flat = g.reshape(m * r, d)
    hh = h @ h.T
    b = (flat @ h.T).reshape(m, r, -1)
    n = (b * b).sum(1)
    w = w * n / (w @ (hh * hh))
    t2 = -4 * ((w[:, None, :] * b).reshape(m * r, -1).T @ flat)
    t1 = 4 * ((w.T @ w) * hh) @ h
    return w, h - lr * (t1 + t2)


#: the in-memory part's shapes, (m, r, d, C); ``wide``'s m is ``--m``
SHAPES = {"wide": (None, 4, 4096, 128), "digits": (1797, 10, 2410, 32)}


def inmemory(tmp, args):
    m, r, d, c = SHAPES[args.shape]
    m = args.m if m is None else m
    store = make_store(tmp / "inmem", m, r, d)
    g = torch.from_numpy(store.read()).clone()  # 64-byte aligned, as npeff keeps resident chunks
    gen = torch.Generator().manual_seed(0)
    w0 = torch.rand(m, c, generator=gen)
    h0 = torch.randn(c, d, generator=gen) * (2 / (c * d)) ** 0.5

    def naive(k, iteration=naive_iteration):
        w, h = w0, h0
        times = []
        for _ in range(k):
            began = time.perf_counter()
            w, h = iteration(g, w, h)
            times.append(time.perf_counter() - began)
        return times

    # alternate the three, each round from the start, steps after each round's first pooled:
    # this machine's noise is per minute
    naive_steps, one_pass_steps, npeff_steps = [], [], []
    for _ in range(args.rounds):
        naive_steps += naive(args.steps + 1)[1:]
        one_pass_steps += naive(args.steps + 1, naive_one_pass_iteration)[1:]
        npeff_steps += list(npeff_run(store, c, args.steps + 1)[1:])
    t_naive, t_one_pass = float(np.median(naive_steps)), float(np.median(one_pass_steps))
    t_npeff = float(np.median(npeff_steps))
    return {"shape": args.shape, "m": m, "r": r, "d": d, "C": c, "rounds": args.rounds,
            "steps_per_round": args.steps, "npeff_s_per_iter": t_npeff, "naive_s_per_iter": t_naive,
            "ratio": t_npeff / t_naive, "naive_one_pass_s_per_iter": t_one_pass,
            "ratio_one_pass": t_npeff / t_one_pass}


def linear(tmp, args):
    r, d, c = 4, 2048, 128
    factors = (1, 2, 4)
    stores = {f: make_store(tmp / f"lin{f}", args.linear_m * f, r, d, seed=f) for f in factors}
    # the sizes in turn, three rounds, steps pooled: one slow minute must not land on one size
    steps = {f: [] for f in factors}
    for _ in range(3):
        for f in factors:
            steps[f] += list(npeff_run(stores[f], c, args.steps + 1)[1:])
    rows = []
    for f in factors:
        m, t = args.linear_m * f, float(np.median(steps[f]))
        rows.append({"m": m, "s_per_iter": t, "s_per_iter_per_m": t / m})
    base = rows[0]["s_per_iter_per_m"]
    for row in rows:
        row["relative_cost_per_example"] = row["s_per_iter_per_m"] / base
    return rows


CHILD = """
import json, sys
sys.path.insert(0, {bench!r})
from decompose import npeff_run, per_iteration, peak_rss_mb
from npeff.store import open_store
store = open_store({path!r})
base = peak_rss_mb()
t = per_iteration(lambda k: npeff_run(store, {c}, k, memory_budget={budget}), {steps})
print(json.dumps({{"s_per_iter": t, "rss_before_MB": base, "peak_rss_MB": peak_rss_mb()}}))
"""


def peak_rss_mb():
    """This process's peak resident set (VmHWM; unlike ru_maxrss it does not inherit the parent's)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(code):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def outofcore(tmp, args):
    r, d, c = 4, 4096, 64
    per_example = r * d * 4
    m = int(args.ooc_gb * 1e9) // per_example
    store = make_store(tmp / "ooc", m, r, d, shard_examples=2048)
    budget = int(args.ooc_gb * 1e9 / 4)
    bench = os.path.dirname(os.path.abspath(__file__))
    streamed = child(CHILD.format(bench=bench, path=str(store.path), c=c, budget=budget, steps=args.steps))
    resident = child(CHILD.format(bench=bench, path=str(store.path), c=c, budget=None, steps=args.steps))
    from bench_store_helpers import drop_cache, files_below  # noqa: F401  (same helpers as bench/store.py)

    drop_cache(files_below(store.path))
    start = time.perf_counter()
    for _chunk in store.iter_chunks():
        pass
    read = time.perf_counter() - start
    bound = max(read, resident["s_per_iter"])
    return {"store_GB": m * per_example / 1e9, "budget_GB": budget / 1e9, "m": m, "C": c,
            "streamed": streamed, "resident": resident, "read_store_s": read,
            "streamed_over_bound": streamed["s_per_iter"] / bound,
            "peak_rss_above_budget_GB": streamed["peak_rss_MB"] * 2**20 / 1e9 - budget / 1e9}


def gemm_flops_per_s(device, d, c, rows=8192, repeats=5):
    """This machine's float32 GEMM rate on the decomposition's shape ``[rows, d] x [d, C]``."""
    a = torch.randn(rows, d, device=device)
    b = torch.randn(d, c, device=device)
    times = []
    for _ in range(repeats + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * rows * d * c / float(np.median(times[1:]))


def sst2(tmp, args):
    """The paper's SST2 size (m = 60000, r = 2, d = 16384, C = 512): all resident and with a budget
    of a quarter of the data, against the FLOP bound of the two big GEMMs per step (B = G H^T and
    T2 = (W * B)^T G, 2 m r d C flops each) at this machine's measured GEMM rate."""
    m, r, d, c = args.sst2_m, 2, 16384, 512
    store = make_store(tmp / "sst2", m, r, d)
    rate = gemm_flops_per_s(args.device, d, c)
    flop_bound = 4 * m * r * d * c / rate
    resident = per_iteration(lambda k: npeff_run(store, c, k, device=args.device), args.steps)
    budget = m * r * d * 4 // 4
    streamed = per_iteration(lambda k: npeff_run(store, c, k, device=args.device, memory_budget=budget),
                             args.steps)
    from bench_store_helpers import drop_cache, files_below

    drop_cache(files_below(store.path))
    start = time.perf_counter()
    for _chunk in store.iter_chunks():
        pass
    read = time.perf_counter() - start
    return {"m": m, "r": r, "d": d, "C": c, "device": args.device, "store_GB": m * r * d * 4 / 1e9,
            "gemm_GFLOP_per_s": rate / 1e9, "flop_bound_s": flop_bound,
            "resident_s_per_iter": resident, "resident_over_flop_bound": resident / flop_bound,
            "budget_GB": budget / 1e9, "streamed_s_per_iter": streamed, "read_store_s": read,
            "streamed_over_max_read_compute": streamed / max(read, resident)}


def cluster(tmp, args):
    m = 32768
    store = make_store(tmp / "cluster", m, 4, 2048, shard_examples=4096)
    # alternate the two, several rounds, and pool the steps: this machine's noise is per minute
    steps, rounds = max(args.steps, 8), 3
    single, spread = [], []
    for _ in range(rounds):
        single += list(npeff_run(store, 128, steps + 1)[1:])
        spread += list(npeff_run(store, 128, steps + 1, cluster="local:2")[1:])
    single, spread = float(np.median(single)), float(np.median(spread))
    return {"m": m, "r": 4, "d": 2048, "C": 128, "rounds": rounds, "steps_per_round": steps,
            "one_process_s_per_iter": single, "local2_s_per_iter": spread, "ratio": spread / single}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["inmemory", "linear", "outofcore", "cluster"])
    parser.add_argument("--m", type=int, default=20000, help="examples of the wide shape (inmemory part)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="wide", help="shape of the inmemory part")
    parser.add_argument("--rounds", type=int, default=1,
                        help="inmemory part: alternating rounds of naive and npeff steps")
    parser.add_argument("--linear-m", type=int, default=8192)
    parser.add_argument("--ooc-gb", type=float, default=2.0, help="out-of-core store size (budget = 1/4)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="torch device of the sst2 part")
    parser.add_argument("--sst2-m", type=int, default=60000, help="examples in the sst2 part")
    parser.add_argument("--dir", default="bench/results/decompose-bench")
    parser.add_argument("--json")
    args = parser.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    tmp = Path(args.dir)
    tmp.mkdir(parents=True, exist_ok=True)
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}"}
    try:
        for part in args.parts:
            results[part] = globals()[part](tmp, args)
            print(json.dumps({part: results[part]}, indent=1), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
