"""The seeded sparse projection ``ssp-v1``: Numba CUDA kernels and their CPU twins.

See ``docs/projection.md`` for the specification.
"""

from npeff.cuda_ops.projection import (
    BACKENDS,
    cuda_available,
    last_backend,
    project,
    project_transpose,
    resolve_backend,
)
from npeff.cuda_ops.spec import SPEC_KIND, ProjectionSpec, reference_matrix

__all__ = [
    "BACKENDS",
    "SPEC_KIND",
    "ProjectionSpec",
    "cuda_available",
    "last_backend",
    "project",
    "project_transpose",
    "reference_matrix",
    "resolve_backend",
]
