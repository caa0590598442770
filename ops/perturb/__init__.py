"""Perturbations along NPEFF components: reconstruction in parameter space and rejection.

Section 3.2 and appendix E of the NPEFF paper. A component's projected pseudo-Fisher vector is
first made orthogonal to the other components' vectors (:func:`reject`), then reconstructed in
parameter space by compressed sensing (:func:`reconstruct`, the FPC solver :func:`fpc`).

Modules:
    reject: orthogonal rejection from the components with |cosine| below a threshold.
    operator: a store's projection as a matrix-free operator ``A`` and its adjoint.
    fpc: the fixed-point continuation solver of Hale, Yin & Zhang (2007) and ``reconstruct``.
"""

from npeff.ops.perturb.fpc import FpcResult, fpc, reconstruct
from npeff.ops.perturb.operator import ProjectionOperator
from npeff.ops.perturb.reject import reject

__all__ = ["FpcResult", "ProjectionOperator", "fpc", "reconstruct", "reject"]
