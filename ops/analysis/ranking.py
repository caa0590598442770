"""A component's top examples: the examples with the largest coefficients in its effective support.

Ties go to the lower example index; examples outside the effective support (a zero coefficient,
or one below the support threshold times the component's largest, see
:mod:`npeff.ops.analysis.coefficients`) are never "top" (section 3 of the NPEFF paper).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from npeff.errors import InvalidArgumentError
from npeff.ops.analysis.coefficients import (DEFAULT_SUPPORT_THRESHOLD, as_coefficient_matrix, component_list,
                                             nonzero_counts, support_counts, support_floors)
from npeff.ops.analysis.source_store import example_columns, open_store_for


def top_indices(W: Any, k: int, components: Sequence[int] | None = None, *,
                support_threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> dict[int, np.ndarray]:
    """Per component, the indices of its (at most) ``k`` top examples, best first.

    Args:
        W: coefficients ``[m, C]``.
        k: how many examples per component, ``1 <= k <= m``.
        components: which components (all when None or empty).
        support_threshold: the effective support's threshold, a fraction of each component's
            largest coefficient (0: every positive coefficient counts).

    Returns:
        ``{component: indices}``, each an integer array of length ``<= k`` (shorter when fewer
        examples are in the component's effective support). Equal coefficients go by example index.

    Notes:
        One stable sort of the supported entries of each column: ``O(m log m)`` time, ``O(m)``
        extra memory per component.
    """
    W = as_coefficient_matrix(W)
    m, n_components = W.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
    if k > m:
        raise InvalidArgumentError(f"k={k} is larger than the number of examples ({m})")
    floors = support_floors(W, support_threshold)
    result = {}
    for c in component_list(components, n_components):
        column = W[:, c]
        supported = np.flatnonzero(column > floors[c])  # in index order, which a stable sort keeps on ties
        result[c] = supported[np.argsort(-column[supported], kind="stable")[:k]]
    return result


def top_examples(decomposition, store=None, *, k: int = 16, components: Sequence[int] | None = None,
                 support_threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> list[dict]:
    """Per component, its top ``k`` examples with text, label, prediction and coefficient.

    Args:
        decomposition: an opened decomposition or fitted coefficients (anything with ``W``
            ``[m, C]``, ``path`` and ``manifest``, see :func:`~npeff.ops.analysis.fitted.open_analysable`).
        store: a path or handle; by default the store the decomposition records (checked to be
            the one it was computed from).
        support_threshold: the effective support's threshold (see :mod:`npeff.ops.analysis.coefficients`).

    Returns:
        One record per component: ``component``, ``n_nonzero`` (positive coefficients),
        ``n_effective`` (the effective support's size), ``support_threshold`` and ``examples``.
    """
    store = open_store_for(decomposition, store)
    W = decomposition.W
    columns = example_columns(store)
    raw, effective = nonzero_counts(W), support_counts(W, support_threshold)
    out = []
    for c, idx in top_indices(W, k, components, support_threshold=support_threshold).items():
        out.append({"component": c, "n_nonzero": int(raw[c]), "n_effective": int(effective[c]),
                    "support_threshold": float(support_threshold), "examples": [
            {"rank": rank + 1, "example_index": int(i), "coefficient": float(W[i, c]),
             "text": columns["text"][i], "label": columns["label"][i], "prediction": columns["prediction"][i],
             "source_id": columns["source_id"][i]}
            for rank, i in enumerate(idx)]})
    return out


__all__ = ["top_examples", "top_indices"]
