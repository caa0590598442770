"""The coefficient matrix ``W`` ``[m, C]`` as the analyses take it: checked, its components chosen,
its non-zero coefficients counted."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from npeff.errors import InvalidArgumentError


def as_coefficient_matrix(W: Any, name: str = "W") -> np.ndarray:
    """``W`` as an array ``[m examples, C components]`` of finite numbers (not copied when it is one).

    Raises:
        InvalidArgumentError: ``W`` is not a matrix, has no components, or holds non-numbers,
            infinities or NaNs (the message names it ``name``).
    """
    W = np.asarray(W)
    if W.ndim != 2:
        raise InvalidArgumentError(f"{name} must be a matrix [examples, components], got shape {W.shape}")
    if W.shape[1] < 1:
        raise InvalidArgumentError(f"{name} has no components")
    if not np.issubdtype(W.dtype, np.number) or not np.all(np.isfinite(W)):
        raise InvalidArgumentError(f"{name} must hold finite numbers")
    return W


def component_list(components: Sequence[int] | None, n_components: int) -> list[int]:
    """The components asked for, checked to exist; all ``n_components`` when none (or empty) are given."""
    if components is None or len(components) == 0:
        return list(range(n_components))
    out = []
    for c in components:
        if not isinstance(c, (int, np.integer)) or not 0 <= c < n_components:
            raise InvalidArgumentError(f"component {c} is out of range: the decomposition has components "
                                       f"0..{n_components - 1}")
        out.append(int(c))
    return out


def nonzero_counts(W: Any) -> np.ndarray:
    """Per component, how many examples have a positive coefficient: ``[C]`` integers."""
    return (as_coefficient_matrix(W) > 0).sum(axis=0)


__all__ = ["as_coefficient_matrix", "component_list", "nonzero_counts"]
