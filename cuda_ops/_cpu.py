"""CPU twins of the projection kernels (``numba.njit(parallel=True)``).

Both kernels walk the input in tiles of whole regions small enough to stay in the L2 cache. A
tile is first transposed to ``[entries, R]`` so that the gather of one chosen entry reads ``R``
contiguous floats (vectorised), then every output ``j`` visits each region of the tile once: the
hash of ``(seed, j, c)`` is computed once and reused for all ``R`` rows.
"""

import numpy as np
from numba import njit, prange

from npeff.cuda_ops import _hash

_splitmix64, _choose = _hash.compile_with(njit(inline="always"))

#: Bytes of one transposed tile (``regions * s * R * 4``); sized for a per-core L2 cache.
TILE_BYTES = 1 << 18


def row_keys(seed, d):
    """``splitmix64(splitmix64(seed) ^ j)`` for ``j < d``: the per-output half of the hash."""
    return _row_keys(np.uint64(seed), d)


@njit(cache=True)
def _row_keys(seed, d):
    keys = np.empty(d, dtype=np.uint64)
    seed_key = _splitmix64(np.uint64(seed))
    for j in range(d):
        keys[j] = _splitmix64(seed_key ^ np.uint64(j))
    return keys


def tile_regions(rows, s, n_regions):
    """Regions per tile: as many as fit in :data:`TILE_BYTES`, at least one."""
    per_tile = max(1, TILE_BYTES // (4 * max(rows, 1) * s))
    return int(min(per_tile, max(n_regions, 1)))


@njit(inline="always")
def _tile_bounds(t, first, last, regions_per_tile, s, offset, nb):
    """Regions ``[c0, c1)`` of tile ``t``, its first global index ``base`` and the part
    ``[lo, hi)`` of it that lies inside the block ``[offset, offset + nb)``."""
    c0 = first + t * regions_per_tile
    c1 = min(c0 + regions_per_tile, last + 1)
    base = c0 * s
    return c0, c1, base, max(base, offset), min(c1 * s, offset + nb)


@njit(parallel=True, cache=True)
def forward(x, keys, offset, s, regions_per_tile, n_groups):
    """Unscaled projection of a block: ``x`` float32 ``[R, nb]`` holding the entries
    ``[offset, offset + nb)``; returns float32 ``[d, R]`` (sum of the signed chosen entries).

    Memory: ``n_groups * d * R`` float32 partial sums plus one tile per group.
    """
    rows, nb = x.shape
    d = keys.shape[0]
    first = offset // s
    last = (offset + nb - 1) // s
    n_tiles = (last - first + regions_per_tile) // regions_per_tile
    partial = np.zeros((n_groups, d, rows), dtype=np.float32)
    for g in prange(n_groups):
        tile = np.empty((regions_per_tile * s, rows), dtype=np.float32)
        acc = partial[g]
        for t in range(g * n_tiles // n_groups, (g + 1) * n_tiles // n_groups):
            c0, c1, base, lo, hi = _tile_bounds(t, first, last, regions_per_tile, s, offset, nb)
            for r in range(rows):
                for i in range(lo, hi):
                    tile[i - base, r] = x[r, i - offset]
            for j in range(d):
                key = keys[j]
                for c in range(c0, c1):
                    index, sign = _choose(key, c, s)
                    if index < lo or index >= hi:
                        continue
                    b = index - base
                    for r in range(rows):
                        acc[j, r] += sign * tile[b, r]
    out = partial[0].copy()
    for g in range(1, n_groups):
        out += partial[g]
    return out


@njit(parallel=True, cache=True)
def transpose(yt, keys, offset, nb, s, regions_per_tile):
    """Adjoint of :func:`forward`: ``yt`` float32 ``[d, R]`` (already scaled); returns float32
    ``[R, nb]`` for the entries ``[offset, offset + nb)``. Tiles own disjoint entries, so the
    parallel loop needs no reduction. Memory: the output plus one tile per thread.
    """
    d, rows = yt.shape
    out = np.zeros((rows, nb), dtype=np.float32)
    first = offset // s
    last = (offset + nb - 1) // s
    n_tiles = (last - first + regions_per_tile) // regions_per_tile
    for t in prange(n_tiles):
        tile = np.zeros((regions_per_tile * s, rows), dtype=np.float32)
        c0, c1, base, lo, hi = _tile_bounds(t, first, last, regions_per_tile, s, offset, nb)
        for j in range(d):
            key = keys[j]
            for c in range(c0, c1):
                index, sign = _choose(key, c, s)
                if index < lo or index >= hi:
                    continue
                b = index - base
                for r in range(rows):
                    tile[b, r] += sign * yt[j, r]
        for r in range(rows):
            for i in range(lo, hi):
                out[r, i - offset] = tile[i - base, r]
    return out
