"""Sparse eigendecomposition of divergence gradients (``npeff sed``): a second decomposer over the
same stores, learning K directions U that reconstruct every example's divergence gradient from few
of them.

- :mod:`~npeff.ops.decomposition.sed.config`: :class:`SedConfig` (no torch);
- :mod:`~npeff.ops.decomposition.sed.directions`: U as full rows or the draft's low-rank factors;
- :mod:`~npeff.ops.decomposition.sed.train`: :func:`sparse_eigendecomposition`, the streamed training;
- :mod:`~npeff.ops.decomposition.sed.toy_models`: the draft's toy models (superposition, XOR).

The names below are imported on first use.
"""

from npeff._lazy import lazy_exports

_EXPORTS = {
    "SedConfig": "npeff.ops.decomposition.sed.config",
    "sparse_eigendecomposition": "npeff.ops.decomposition.sed.train",
    "sed_loss": "npeff.ops.decomposition.sed.train",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
