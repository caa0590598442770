"""Orthogonal rejection of a pseudo-Fisher vector from the other components' vectors.

Section 3.2 of the NPEFF paper: to make a perturbation along component ``k``'s pseudo-Fisher
vector ``h`` affect that component selectively, ``h`` is made orthogonal to the other components'
vectors, but only to those that are not too similar to it. Iterating over the other components
``i`` in order, with ``ĥ_i`` the L2-normalised vector of component ``i``::

    if |hᵀĥ_i| / ‖h‖ < threshold:   h ← h − (hᵀĥ_i) ĥ_i

The test uses the *current* ``h`` (already rejected from the earlier components), so the order of
the components matters, as in the paper. The steps work on the projected vectors, before the
compressed-sensing reconstruction (:func:`npeff.ops.perturb.compressed_sensing.reconstruct`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from npeff.errors import InvalidArgumentError

#: The paper's threshold on the absolute cosine similarity (section 3.2).
DEFAULT_THRESHOLD = 0.5


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _as_float64_tensor(x: Any, name: str, ndim: int, device=None):
    import torch

    if isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise InvalidArgumentError(f"{name} must hold real numbers, got dtype {x.dtype}")
        tensor = torch.from_numpy(np.asarray(x, dtype=np.float64))
    elif _is_torch(x):
        if x.is_complex() or x.dtype == torch.bool:
            raise InvalidArgumentError(f"{name} must hold real numbers, got dtype {x.dtype}")
        tensor = x.detach().to(torch.float64)
    else:
        raise InvalidArgumentError(
            f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}")
    if tensor.ndim != ndim:
        shape = "[d]" if ndim == 1 else "[C, d]"
        raise InvalidArgumentError(f"{name} must be {shape}, got shape {tuple(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise InvalidArgumentError(f"{name} holds NaN or infinite values; pass finite vectors")
    return tensor if device is None else tensor.to(device)


def reject(h: Any, others: Any, *, threshold: float = DEFAULT_THRESHOLD, exclude: int | None = None):
    """Reject ``h`` from the other components' vectors whose |cosine| with it is below ``threshold``.

    Args:
        h: the chosen component's projected pseudo-Fisher vector ``[d]``; numpy array or torch tensor.
        others: the other components' vectors ``[C, d]``, in the order they are visited (numpy or
            torch, any device; moved to ``h``'s). Either the caller leaves the chosen component out,
            or passes all ``C`` vectors and names the chosen one's row with ``exclude``.
        threshold: reject from ``ĥ_i`` only when ``|hᵀĥ_i| / ‖h‖ < threshold`` (strictly), tested
            against the current ``h``. ``0`` rejects from nothing; values above ``1`` reject from
            every vector. The paper uses 0.5.
        exclude: index of a row of ``others`` to skip (the chosen component itself), or None.

    Returns:
        The rejected vector ``[d]``: the same kind of object as ``h`` (numpy or torch, same device)
        and the same floating dtype (float64 for an integer ``h``). Zero rows of ``others`` are
        skipped; a zero ``h`` comes back unchanged (its cosine is undefined).

    Notes:
        Arithmetic in float64; memory ``O(C * d)`` for a float64 copy of ``others``. The loop is
        sequential (each test depends on the previous rejections): ``C`` dot products of length
        ``d``. Paper, section 3.2.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
        math.isfinite(threshold) and threshold >= 0
    ):
        raise InvalidArgumentError(f"threshold must be a finite number >= 0, got {threshold!r}")
    current = _as_float64_tensor(h, "h", 1)
    rows = _as_float64_tensor(others, "others", 2, device=current.device)
    if rows.shape[1] != current.shape[0]:
        raise InvalidArgumentError(
            f"others has {rows.shape[1]} columns but h has length {current.shape[0]}; "
            "others must be [C, d] with h's d")
    if exclude is not None:
        if isinstance(exclude, bool) or not isinstance(exclude, (int, np.integer)) or not (
            0 <= exclude < rows.shape[0]
        ):
            raise InvalidArgumentError(
                f"exclude must be a row index of others in [0, {rows.shape[0]}), got {exclude!r}")
    current = current.clone()
    for index in range(rows.shape[0]):
        if index == exclude:
            continue
        norm_other = rows[index].norm()
        norm_h = current.norm()
        if norm_other == 0 or norm_h == 0:
            continue
        unit = rows[index] / norm_other
        projection = current @ unit
        if abs(projection) / norm_h < threshold:
            current -= projection * unit
    return _like(current, h)


def _like(result, template):
    """``result`` (float64 torch) as the template's kind, device and floating dtype."""
    import torch

    if _is_torch(template):
        dtype = template.dtype if template.is_floating_point() else torch.float64
        return result.to(device=template.device, dtype=dtype)
    dtype = template.dtype if np.issubdtype(template.dtype, np.floating) else np.float64
    return result.cpu().numpy().astype(dtype, copy=False)
