"""NPEFF decomposition over a PEF store and coefficient fitting.

- :mod:`~npeff.ops.decomposition.config`: :class:`DecomposeConfig`, the settings;
- :mod:`~npeff.ops.decomposition.algorithm`: Algorithm 1 as a chunk step and a small-state step;
- :mod:`~npeff.ops.decomposition.driver`: :func:`decompose`, the run (init, loop, checkpoints, output);
- :mod:`~npeff.ops.decomposition.fit`: :func:`fit_coefficients`, W for new data with H fixed.
- :mod:`~npeff.ops.decomposition.normalization`: PEFs normalised as they are read, and why a loss
  became non-finite.

The names below are imported on first use (the config alone loads no torch).
"""

from npeff._lazy import lazy_exports

_EXPORTS = {
    "DecomposeConfig": "npeff.ops.decomposition.config",
    "decompose": "npeff.ops.decomposition.driver",
    "parse_bytes": "npeff.ops.stream.plan",
    "fit_coefficients": "npeff.ops.decomposition.fit",
    "chunk_step": "npeff.ops.decomposition.algorithm",
    "DecompositionError": "npeff.errors",
    "load_array": "npeff.store.arrays",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = sorted(_EXPORTS)
