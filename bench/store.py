"""Benchmark of the PEF store: append and sequential read throughput against plain numpy files,
and the cost of checking each shard against its recorded checksum on its first read.

Writes a store of about --gb gigabytes (float32, rank --rank, dim --dim) by appending batches,
then reads it back through ``iter_chunks()``; side by side, writes the same bytes with
``ndarray.tofile`` and reads them with one ``numpy.fromfile``. Reads are timed cold (pages of
both files dropped from the OS cache with posix_fadvise after a sync) and warm, alternating the
two readers --repeat times and taking medians (a virtual disk may still cache below the OS).
These store reads check the crc32c of each inner chunk only (``check_shards=False``).

Then the first full read of the store with the shard check (every shard file hashed, xxh3-128,
as in a fresh process: :func:`npeff.store.integrity.forget_checked_shards` before each) against
the same read without it, alternated the same way, cold and warm; ``check_cost_*`` is the ratio
of their times.

Usage:
    python bench/store.py                    # 4 GiB store, r=8, d=8192 (docs/benchmarks.md)
    python bench/store.py --gb 0.5 --dir /scratch/npeff-bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from bench_store_helpers import drop_cache, files_below


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--gb", type=float, default=4.0, help="store size in GiB")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--dim", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=64, help="examples per append")
    parser.add_argument("--dir", default="bench/results/store-bench", help="scratch directory")
    parser.add_argument("--repeat", type=int, default=3, help="alternating read repetitions (median)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch files")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()

    from npeff.store import create_store, open_store
    from npeff.store.integrity import forget_checked_shards

    scratch = Path(args.dir)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    per_example = args.rank * args.dim * 4
    m = int(args.gb * (1 << 30)) // per_example
    m -= m % args.batch
    total = m * per_example
    batch = np.random.default_rng(0).standard_normal((args.batch, args.rank, args.dim), dtype=np.float32)
    results = {"m": m, "rank": args.rank, "dim": args.dim, "bytes": total, "batch": args.batch,
               "machine": f"{platform.machine()}, {os.cpu_count()} cpus"}

    # append through the store
    store_path = scratch / "store"
    start = time.perf_counter()
    writer = create_store(store_path, rank=args.rank, dim=args.dim, projection={"kind": "external"})
    for _ in range(m // args.batch):
        writer.append(batch)
    store = writer.finalize()
    results["append_s"] = time.perf_counter() - start
    results["shard_MB"] = store.config.shard_examples * per_example / 1e6

    # the same bytes with numpy
    raw_path = scratch / "raw.f32"
    start = time.perf_counter()
    with open(raw_path, "wb") as handle:
        for _ in range(m // args.batch):
            batch.tofile(handle)
    results["tofile_s"] = time.perf_counter() - start

    def read_store(check_shards=False):
        count = 0
        for chunk in open_store(store_path, check_shards=check_shards).iter_chunks():
            count += chunk.data.nbytes
        assert count == total

    def read_checked():
        forget_checked_shards()  # a first read, as in a fresh process
        read_store(check_shards=True)

    def read_raw():
        data = np.fromfile(raw_path, dtype=np.float32)
        assert data.nbytes == total

    for temperature in ("cold", "warm"):
        times = {"store": [], "fromfile": []}
        for _ in range(args.repeat):  # alternate the two readers so that drifts hit both
            for name, reader, paths in (("store", read_store, files_below(store_path)),
                                        ("fromfile", read_raw, [raw_path])):
                if temperature == "cold":
                    drop_cache(paths)
                start = time.perf_counter()
                reader()
                times[name].append(time.perf_counter() - start)
        for name, values in times.items():
            results[f"{name}_read_{temperature}_s"] = float(np.median(values))
            results[f"{name}_read_{temperature}_all_s"] = [round(v, 3) for v in values]

    for temperature in ("cold", "warm"):
        times = {"checked": [], "unchecked": []}
        for _ in range(args.repeat):
            for name, reader in (("checked", read_checked), ("unchecked", read_store)):
                if temperature == "cold":
                    drop_cache(files_below(store_path))
                start = time.perf_counter()
                reader()
                times[name].append(time.perf_counter() - start)
        for name, values in times.items():
            results[f"{name}_read_{temperature}_s"] = float(np.median(values))
            results[f"{name}_read_{temperature}_all_s"] = [round(v, 3) for v in values]
        results[f"check_cost_{temperature}"] = (results[f"checked_read_{temperature}_s"]
                                                / results[f"unchecked_read_{temperature}_s"])

    gb = total / 1e9
    for key in [k for k in results if k.endswith("_s") and not k.endswith("_all_s")]:
        results[key.replace("_s", "_GBps")] = gb / results[key]
    for temperature in ("cold", "warm"):
        results[f"read_ratio_{temperature}"] = (results[f"fromfile_read_{temperature}_s"]
                                                / results[f"store_read_{temperature}_s"])
        results[f"append_over_store_read_{temperature}"] = (results[f"store_read_{temperature}_s"]
                                                            / results["append_s"])
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if not args.keep:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
