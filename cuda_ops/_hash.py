"""Scalar hash of ``ssp-v1`` written once, compiled for the CPU (``numba.njit``) and the GPU
(``numba.cuda.jit(device=True)``). Every operand is an unsigned 64-bit integer: numba turns mixed
signed/unsigned arithmetic into float64, which would silently change the matrix.
"""

import numpy as np

GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
MIX_C1 = np.uint64(0xBF58476D1CE4E5B9)
MIX_C2 = np.uint64(0x94D049BB133111EB)
SHIFT_30 = np.uint64(30)
SHIFT_27 = np.uint64(27)
SHIFT_31 = np.uint64(31)
SHIFT_32 = np.uint64(32)
ONE = np.uint64(1)


def splitmix64(z):
    """SplitMix64 step on a uint64 (wraps modulo 2**64)."""
    z = z + GOLDEN_GAMMA
    z = (z ^ (z >> SHIFT_30)) * MIX_C1
    z = (z ^ (z >> SHIFT_27)) * MIX_C2
    return z ^ (z >> SHIFT_31)


def compile_with(jit):
    """Compile the hash with ``jit`` (``numba.njit(...)`` or ``cuda.jit(device=True)``).

    Returns ``(splitmix64, choose)`` where ``choose(row_key, c, s)`` gives
    ``(global_index, sign)``: the entry chosen in region ``c`` for the output whose row key is
    ``row_key`` (= ``splitmix64(splitmix64(seed) ^ j)``), ``s`` being the region size, and its
    sign as float32 ``+-1``. The position in the region is ``((h >> 32) * s) >> 32`` (a
    multiply-shift range reduction: no division on the hot path), the sign is ``-1`` iff the
    lowest bit of ``h`` is set (branch-free: ``1 - 2 * (h & 1)``).
    """
    mix = jit(splitmix64)

    def choose(row_key, c, s):
        h = mix(row_key ^ np.uint64(c))
        position = np.int64(((h >> SHIFT_32) * np.uint64(s)) >> SHIFT_32)
        sign = np.float32(1.0) - np.float32(2.0) * np.float32(h & ONE)
        return np.int64(c) * np.int64(s) + position, sign

    return mix, jit(choose)
