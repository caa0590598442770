"""CPU twins of the projection kernels (``numba.njit(parallel=True)``).

The kernels walk the input in tiles of whole regions small enough to stay in the L2 cache. For
many rows a tile is first transposed to ``[entries, R]`` so that the gather of one chosen entry
reads ``R`` contiguous floats (vectorised), then every output ``j`` visits each region of the tile
once: the hash of ``(seed, j, c)`` is computed once and reused for all ``R`` rows. For a few rows
(:data:`FEW_ROWS` or fewer) that gather is too short to pay for its loop: :func:`forward_few_rows`
instead takes the hashes of a block of outputs for one region at once (a loop the compiler
vectorises, 64-bit multiplies included) and gathers one row's chosen entries for all of them
(measured on a 2-core AVX-512 VM at d = 8192: 2.5x the rows-last kernel at one row, 1.3x at 4,
0.6x at 16). Evaluating the hash alone costs 0.15 ns per ``(j, c)`` pair there, a few percent of
a pass: the gathers and the accumulation are the cost, not the hash.

The forward kernels split the tiles into a number of groups that depends on the block only
(:func:`group_count`), never on the thread count, and add the groups' partial sums in order: the
result is the same, bit for bit, on any number of threads.
"""

import numpy as np
from numba import njit, prange

from npeff.cuda_ops import _hash

_splitmix64, _choose = _hash.compile_with(njit(inline="always"))

#: Bytes of one transposed tile (``regions * s * R * 4``); sized for a per-core L2 cache.
TILE_BYTES = 1 << 18
#: Up to this many rows, :func:`forward_few_rows` runs instead of :func:`forward`.
FEW_ROWS = 4
#: Outputs whose hashes for one region are taken at once by :func:`forward_few_rows`.
OUTPUT_BLOCK = 64
#: Most groups of tiles a forward pass is split into (they run in parallel), and the most bytes
#: their partial sums may take.
MAX_GROUPS = 8
PARTIAL_BYTES = 32 << 20


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


def group_count(rows, d, n_tiles):
    """Groups of tiles of a forward pass: up to :data:`MAX_GROUPS`, one per tile at most, with
    their ``groups * d * rows`` float32 partial sums within :data:`PARTIAL_BYTES`. A function of
    the block alone, so that the order of the sums does not depend on the machine."""
    return int(max(1, min(MAX_GROUPS, n_tiles, PARTIAL_BYTES // max(1, 4 * d * rows))))


@njit(inline="always")
def _block_tiles(offset, nb, s, regions_per_tile):
    """First and last region of the block ``[offset, offset + nb)`` and its number of tiles."""
    first = offset // s
    last = (offset + nb - 1) // s
    return first, last, (last - first + regions_per_tile) // regions_per_tile


@njit(inline="always")
def _sum_in_order(partial):
    """``partial[0] + partial[1] + ...`` (groups of tiles added in a fixed order)."""
    out = partial[0].copy()
    for g in range(1, partial.shape[0]):
        out += partial[g]
    return out


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
    first, last, n_tiles = _block_tiles(offset, nb, s, regions_per_tile)
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
    return _sum_in_order(partial)


@njit(inline="always")
def _region_choices(keys, jb, je, c, tile_start, s, positions, signs):
    """Positions in the tile (``tile_start`` is region ``c``'s) and signs chosen in region ``c``
    by the outputs ``[jb, je)``; a loop without branches, vectorised by the compiler."""
    cu = np.uint64(c)
    su = np.uint64(s)
    for q in range(je - jb):
        h = _splitmix64(keys[jb + q] ^ cu)
        positions[q] = tile_start + np.int64(((h >> _hash.SHIFT_32) * su) >> _hash.SHIFT_32)
        signs[q] = np.float32(1.0) - np.float32(2.0) * np.float32(h & _hash.ONE)


@njit(parallel=True, cache=True)
def forward_few_rows(x, keys, offset, s, regions_per_tile, n_groups):
    """:func:`forward` for a few rows, returning float32 ``[R, d]``: the tile stays rows-first
    (zero outside the block, so no entry needs a bounds check) and, per region, the choices of
    :data:`OUTPUT_BLOCK` outputs are hashed at once, then gathered row by row. Each sum runs over
    the regions in the same order as in :func:`forward`.

    Memory: ``n_groups * R * d`` float32 partial sums plus one tile per group.
    """
    rows, nb = x.shape
    d = keys.shape[0]
    first, last, n_tiles = _block_tiles(offset, nb, s, regions_per_tile)
    partial = np.zeros((n_groups, rows, d), dtype=np.float32)
    for g in prange(n_groups):
        tile = np.zeros((rows, regions_per_tile * s), dtype=np.float32)
        positions = np.empty(OUTPUT_BLOCK, dtype=np.int64)
        signs = np.empty(OUTPUT_BLOCK, dtype=np.float32)
        acc = partial[g]
        for t in range(g * n_tiles // n_groups, (g + 1) * n_tiles // n_groups):
            c0, c1, base, lo, hi = _tile_bounds(t, first, last, regions_per_tile, s, offset, nb)
            for r in range(rows):
                tile[r, :] = 0
                tile[r, lo - base:hi - base] = x[r, lo - offset:hi - offset]
            for jb in range(0, d, OUTPUT_BLOCK):
                je = min(jb + OUTPUT_BLOCK, d)
                for c in range(c0, c1):
                    _region_choices(keys, jb, je, c, (c - c0) * s, s, positions, signs)
                    for r in range(rows):
                        sums = acc[r, jb:je]
                        values = tile[r]
                        for q in range(je - jb):
                            sums[q] += signs[q] * values[positions[q]]
    return _sum_in_order(partial)


@njit(parallel=True, cache=True)
def transpose(yt, keys, offset, nb, s, regions_per_tile):
    """Adjoint of :func:`forward`: ``yt`` float32 ``[d, R]`` (already scaled); returns float32
    ``[R, nb]`` for the entries ``[offset, offset + nb)``. Tiles own disjoint entries, so the
    parallel loop needs no reduction. Memory: the output plus one tile per thread.
    """
    d, rows = yt.shape
    out = np.zeros((rows, nb), dtype=np.float32)
    first, last, n_tiles = _block_tiles(offset, nb, s, regions_per_tile)
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
