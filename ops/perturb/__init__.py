"""Perturbing the model along components (paper, sections 2.2.1 and 3.2, appendix E; Table 2).

Modules:
    rejection: orthogonal rejection from the components with |cosine| below a threshold.
    spectrum: the largest eigenvalue of ``AᵀA`` (Lanczos), for FPC's scaling.
    operator: a store's projection as a matrix-free operator ``A`` and its adjoint.
    compressed_sensing: the fixed-point continuation solver of Hale, Yin & Zhang (2007) and ``reconstruct``.
    apply: moving the model's parameters along a direction, restored bit for bit.
    evaluate: KL divergences of the perturbed from the original predictions.
    settings: :class:`PerturbSettings`, the rejection, reconstruction and magnitude settings.
    run: :func:`perturb` (``npeff perturb``) and :class:`Perturber` for any direction.

The names below are imported on first use (the settings alone load no torch).
"""

from npeff._lazy import lazy_exports

_EXPORTS = {
    "FpcResult": "npeff.ops.perturb.compressed_sensing",
    "fpc": "npeff.ops.perturb.compressed_sensing",
    "reconstruct": "npeff.ops.perturb.compressed_sensing",
    "ProjectionOperator": "npeff.ops.perturb.operator",
    "reject": "npeff.ops.perturb.rejection",
    "PerturbSettings": "npeff.ops.perturb.settings",
    "Perturber": "npeff.ops.perturb.run",
    "perturb": "npeff.ops.perturb.run",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
