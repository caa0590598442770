"""The coefficient matrix ``W`` ``[m, C]`` as the analyses take it: checked, its components chosen,
its non-zero coefficients counted, and its **effective support**.

Multiplicative updates (Algorithm 1 of the NPEFF paper) drive coefficients towards zero without
ever reaching it: a decomposition's ``W`` holds many entries of 1e-12 that are zero in all but
name. The effective support of a component is the set of examples whose coefficient exceeds
``threshold`` times the component's largest coefficient (:data:`DEFAULT_SUPPORT_THRESHOLD`,
``1e-6``); ``threshold=0`` counts every positive entry. The tunings' exclusion of components
with fewer than 16 examples, the component sizes and the top examples all rest on it.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from npeff.errors import InvalidArgumentError

#: an entry counts as non-zero when above this fraction of its component's largest coefficient
DEFAULT_SUPPORT_THRESHOLD = 1e-6


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


def check_support_threshold(threshold: Any) -> float:
    """``threshold`` as a float in ``[0, 1)``; :class:`InvalidArgumentError` otherwise."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
            or not math.isfinite(threshold) or not 0 <= threshold < 1:
        raise InvalidArgumentError(f"the support threshold is a fraction of each component's largest "
                                   f"coefficient in [0, 1), got {threshold!r}")
    return float(threshold)


def support_floors(W: Any, threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> np.ndarray:
    """Per component, the value a coefficient must exceed to be in its effective support: ``[C]``,
    ``threshold * max_i W[i, c]`` (0 for a component without a positive coefficient)."""
    W = as_coefficient_matrix(W)
    threshold = check_support_threshold(threshold)
    if W.shape[0] == 0:
        return np.zeros(W.shape[1])
    return threshold * np.maximum(W.max(axis=0), 0).astype(np.float64)


def support_mask(W: Any, threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> np.ndarray:
    """``[m, C]`` booleans: entry ``(i, c)`` is in component ``c``'s effective support, i.e.
    ``W[i, c] > 0`` and ``W[i, c] > threshold * max_i W[i, c]``.

    Notes:
        Memory: one ``[m, C]`` boolean array.
    """
    W = as_coefficient_matrix(W)
    return W > support_floors(W, threshold)[None, :]  # the floors are >= 0: only positive entries pass


def nonzero_counts(W: Any) -> np.ndarray:
    """Per component, how many examples have a positive coefficient (the raw count): ``[C]`` integers."""
    return (as_coefficient_matrix(W) > 0).sum(axis=0)


def support_counts(W: Any, threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> np.ndarray:
    """Per component, the size of its effective support (see :func:`support_mask`): ``[C]`` integers.

    ``threshold=0`` gives :func:`nonzero_counts`.
    """
    return support_mask(W, threshold).sum(axis=0)


__all__ = ["DEFAULT_SUPPORT_THRESHOLD", "as_coefficient_matrix", "check_support_threshold", "component_list",
           "nonzero_counts", "support_counts", "support_floors", "support_mask"]
