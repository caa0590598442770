"""npeff: Non-Negative Per-Example Fisher Factorization, out of core.

Subpackages:
    npeff.cuda_ops  the seeded sparse projection (Numba CUDA kernels and CPU twins)
    npeff.store     the on-disk formats (PEF stores, manifests, readers and writers)
    npeff.ops       the math (PEFs, decomposition, analysis)
    npeff.cli       the ``npeff`` command
"""

from importlib.metadata import PackageNotFoundError, version

from npeff.errors import NpeffError

try:
    __version__ = version("npeff")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["NpeffError", "__version__"]
