"""What the writer checks of the values appended: finiteness as stored, and each example's rank."""

from __future__ import annotations

import numpy as np


def finite_and_ranks(g: np.ndarray, storage: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Per example of ``g[k, r, d]``: are all values finite once stored in ``storage`` (bool ``[k]``),
    and how many of its rows are nonzero (its rank, int ``[k]``).

    One pass over ``g`` in its dtype (memory: the ``[k, r]`` row norms); only examples whose row
    norms overflow are re-checked in float64. Values wider than the storage (float64 into float32,
    float32 into float16) that would overflow it count as non-finite: the check is of what is
    stored, which costs a second pass over such input.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.einsum("krd,krd->kr", g, g)
        finite = np.isfinite(norms).all(axis=1)
        for i in np.flatnonzero(~finite):
            if np.isfinite(g[i]).all():
                norms[i] = np.einsum("rd,rd->r", g[i], g[i], dtype=np.float64)
                finite[i] = True
        if np.finfo(g.dtype).max > np.finfo(storage).max:  # e.g. float64 values stored as float32
            finite &= np.abs(g).max(axis=(1, 2), initial=0) <= np.finfo(storage).max
    return finite, (norms > 0).sum(axis=1)
