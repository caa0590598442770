"""NPEFF decomposition over a PEF store and coefficient fitting.

- :mod:`~npeff.ops.decomposition.config`: :class:`DecomposeConfig`, the settings;
- :mod:`~npeff.ops.decomposition.npeff`: Algorithm 1 as a chunk step and a small-state step;
- :mod:`~npeff.ops.decomposition.driver`: :func:`decompose`, the run (init, loop, checkpoints, output);
- :mod:`~npeff.ops.decomposition.fit`: :func:`fit_coefficients`, W for new data with H fixed.
"""

from npeff.errors import DecompositionError
from npeff.ops.decomposition.config import DecomposeConfig
from npeff.ops.decomposition.driver import decompose, parse_bytes
from npeff.ops.decomposition.fit import fit_coefficients
from npeff.ops.decomposition.npeff import chunk_step
from npeff.store.arrays import load_array

__all__ = ["DecomposeConfig", "DecompositionError", "chunk_step", "decompose", "fit_coefficients",
           "load_array", "parse_bytes"]
