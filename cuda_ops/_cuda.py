"""CUDA projection kernels (``numba.cuda`` from the ``numba-cuda`` package).

Importing this module imports ``numba.cuda``; it is loaded only when the CUDA backend is used.
Under ``NUMBA_ENABLE_CUDASIM=1`` the same kernels run on the CPU simulator (tests).

Layout: the block is ``xt[nb, R]`` (rows last), so the ``R`` lanes of a warp that gather one
chosen entry read ``R`` contiguous floats (one coalesced transaction for ``R = 32``). A thread
block holds ``WARPS`` warps, one output ``j`` each; the 32 lanes of a warp first hash 32 regions
in parallel into shared memory, then every lane walks those 32 choices for its own row. The hash
of ``(seed, j, c)`` is thus computed once per group of 32 rows. Grid: ``x`` over output groups,
``y`` over chunks of regions (partial sums are added with atomics), ``z`` over groups of 32 rows.
"""

import numba
from numba import cuda, float32, int64

from npeff.cuda_ops import _hash

WARPS = 4
LANES = 32
#: Regions walked by one thread block (a multiple of LANES).
REGIONS_PER_BLOCK = 1024

_splitmix64, _choose = _hash.compile_with(cuda.jit(device=True))


@cuda.jit(device=True)
def _thread_position(d, first, last, regions_per_block):
    """``(lane, warp, j, r, c_begin, c_end)`` of this thread: its output ``j``, row ``r`` and the
    regions ``[c_begin, c_end)`` of its block."""
    lane = cuda.threadIdx.x % LANES
    warp = cuda.threadIdx.x // LANES
    j = cuda.blockIdx.x * WARPS + warp
    r = cuda.blockIdx.z * LANES + lane
    c_begin = first + cuda.blockIdx.y * regions_per_block
    c_end = min(c_begin + regions_per_block, last + 1)
    return lane, warp, j, r, c_begin, c_end


@cuda.jit(device=True)
def _encoded_choice(keys, j, d, c, c_end, s, offset, nb):
    """The entry chosen for output ``j`` in region ``c`` as ``local_index * 2 + (sign < 0)``, or
    -1 when there is none inside the block (or ``j``/``c`` are past the end)."""
    code = int64(-1)
    if j < d and c < c_end:
        index, sign = _choose(keys[j], c, s)
        if index >= offset and index < offset + nb:
            code = (index - offset) * 2 + (1 if sign < 0 else 0)
    return code


@cuda.jit
def forward_kernel(xt, keys, offset, s, first, last, regions_per_block, y):
    """``y[d, R] += sum of signed chosen entries``; ``xt[nb, R]`` holds ``[offset, offset+nb)``."""
    nb = xt.shape[0]
    rows = xt.shape[1]
    d = keys.shape[0]
    lane, warp, j, r, c_begin, c_end = _thread_position(d, first, last, regions_per_block)
    chosen = cuda.shared.array((WARPS, LANES), dtype=int64)
    acc = float32(0.0)
    for batch in range(c_begin, c_end, LANES):
        chosen[warp, lane] = _encoded_choice(keys, j, d, batch + lane, c_end, s, offset, nb)
        cuda.syncthreads()
        if j < d and r < rows:
            for k in range(LANES):
                code = chosen[warp, k]
                if code >= 0:
                    value = xt[code // 2, r]
                    if code % 2 == 1:
                        acc -= value
                    else:
                        acc += value
        cuda.syncthreads()
    if j < d and r < rows:
        cuda.atomic.add(y, (j, r), acc)


@cuda.jit
def transpose_kernel(yt, keys, offset, s, first, last, regions_per_block, out):
    """``out[nb, R] += A^T y`` for the entries ``[offset, offset+nb)``; ``yt[d, R]`` is scaled."""
    nb = out.shape[0]
    rows = out.shape[1]
    d = keys.shape[0]
    lane, warp, j, r, c_begin, c_end = _thread_position(d, first, last, regions_per_block)
    chosen = cuda.shared.array((WARPS, LANES), dtype=int64)
    value = float32(0.0)
    if j < d and r < rows:
        value = yt[j, r]
    for batch in range(c_begin, c_end, LANES):
        chosen[warp, lane] = _encoded_choice(keys, j, d, batch + lane, c_end, s, offset, nb)
        cuda.syncthreads()
        if j < d and r < rows and value != 0:
            for k in range(LANES):
                code = chosen[warp, k]
                if code >= 0:
                    if code % 2 == 1:
                        cuda.atomic.add(out, (code // 2, r), -value)
                    else:
                        cuda.atomic.add(out, (code // 2, r), value)
        cuda.syncthreads()


MAX_GRID_Y = 65535


def launch_grid(d, rows, first, last):
    """``(blocks, threads, regions_per_block)`` shared by both kernels.

    A block walks at least :data:`REGIONS_PER_BLOCK` regions, more when the grid's ``y``
    dimension (at most 65535 blocks) would not cover the block otherwise.
    """
    n_regions = last - first + 1
    per_block = max(REGIONS_PER_BLOCK, -(-n_regions // MAX_GRID_Y))
    per_block = -(-per_block // LANES) * LANES
    blocks = ((d + WARPS - 1) // WARPS, (n_regions + per_block - 1) // per_block,
              (rows + LANES - 1) // LANES)
    return blocks, WARPS * LANES, per_block


def is_simulator():
    """True when ``NUMBA_ENABLE_CUDASIM=1`` routes kernels to the CPU simulator."""
    return bool(numba.config.ENABLE_CUDASIM)


def available():
    """True when a CUDA device (or the simulator) can run the kernels."""
    try:
        return bool(cuda.is_available())
    except Exception:  # driver problems surface as various exceptions
        return False


