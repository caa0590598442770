"""Benchmark: a decomposition pass over a store read over HTTP and S3 from 127.0.0.1 against the
same store read locally.

One synthetic store (default m=4096, r=2, d=8192: 256 MiB float32, 128 MiB shards of 4 MiB
chunks) is decomposed with a memory budget of one byte, so every step reads the whole store from
its location: locally (the page cache warm after the first step), from a static HTTP server with
Range requests (aiohttp, a subprocess) and from an S3-compatible server (moto, in this process).
The time per step is npeff's own per-step timing, the median of the steps after the first; the
ratios to the local step are what to compare (the machine is shared and noisy).

Also ``verify`` of the whole store from each location (every byte read and hashed once).

Usage:
    python bench/remote.py                 # m=4096, 4 steps per location
    python bench/remote.py --m 1024 --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' servers

from bench.decompose import make_store  # noqa: E402
from tests.remote_servers import TEST_CREDENTIALS, s3_client, serve_http, serve_s3  # noqa: E402


def step_seconds(url: str, steps: int, components: int) -> tuple[float, list[float]]:
    from npeff.ops import decompose

    result = decompose(url, components, memory_budget=1, warmup_steps=steps, joint_steps=0, seed=0)
    times = list(result["step_seconds"])
    return statistics.median(times[1:]), times


def verify_seconds(url: str) -> float:
    from npeff.store import verify_store

    start = time.perf_counter()
    report = verify_store(url)
    assert report.ok, report.problems
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", type=int, default=4096)
    parser.add_argument("--r", type=int, default=2)
    parser.add_argument("--d", type=int, default=8192)
    parser.add_argument("--components", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "served"
        make_store(root / "store", args.m, args.r, args.d)
        size = sum(p.stat().st_size for p in (root / "store").rglob("*") if p.is_file())
        results = {"machine": f"{platform.node()} ({os.cpu_count()} cores)", "m": args.m, "r": args.r,
                   "d": args.d, "C": args.components, "store_bytes": size}
        with serve_http(root) as http, serve_s3() as endpoint:
            os.environ.update(TEST_CREDENTIALS, AWS_ENDPOINT_URL=endpoint)
            client = s3_client(endpoint)
            client.create_bucket(Bucket="bench-stores")
            for path in sorted((root / "store").rglob("*")):
                if path.is_file():
                    client.upload_file(str(path), "bench-stores", f"store/{path.relative_to(root / 'store')}")
            locations = {"local": str(root / "store"), "http": f"{http}/store", "s3": "s3://bench-stores/store"}
            for name, url in locations.items():
                median, times = step_seconds(url, args.steps, args.components)
                results[name] = {"step_s": round(median, 4), "steps_s": [round(t, 4) for t in times],
                                 "read_MBps": round(size / median / 1e6, 1), "verify_s": round(verify_seconds(url), 3)}
        for name in ("http", "s3"):
            results[name]["step_vs_local"] = round(results[name]["step_s"] / results["local"]["step_s"], 2)
            results[name]["verify_vs_local"] = round(results[name]["verify_s"] / results["local"]["verify_s"], 2)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
