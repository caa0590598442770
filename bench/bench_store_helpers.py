"""Helpers shared by the benchmarks: page-cache eviction, synthetic rank-1 stores."""

import os

import numpy as np


def drop_cache(paths):
    """Evict the files' pages from the OS page cache (clean pages only, hence the sync)."""
    os.sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def files_below(root):
    return [os.path.join(r, f) for r, _, fs in os.walk(root) for f in fs]


def rank1_store(path, m, d, *, kind="gradient", seed=0, unit=True):
    """A synthetic rank-1 store of ``m`` standard normal rows of length ``d``, unit-normalised (as
    gradient stores are) or scaled by a log-normal size per example (as divergence gradients are,
    ``unit=False``): the timings do not depend on the values."""
    from npeff.store import create_store

    rng = np.random.default_rng(seed)
    writer = create_store(path, rank=1, dim=d, projection={"kind": "external"}, kind=kind, normalized=unit)
    for start in range(0, m, 4096):
        rows = rng.standard_normal((min(4096, m - start), 1, d))
        if unit:
            rows /= np.linalg.norm(rows, axis=2, keepdims=True)
        else:
            rows *= rng.lognormal(0, 0.5, (len(rows), 1, 1))
        writer.append(rows.astype(np.float32))
    return writer.finalize()
