"""A component's top examples: the examples with the largest positive coefficients.

Ties go to the lower example index; examples with a zero coefficient are never "top" (section 3 of
the NPEFF paper).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from npeff.errors import InvalidArgumentError
from npeff.ops.analysis.coefficients import as_coefficient_matrix, component_list, nonzero_counts
from npeff.ops.analysis.source_store import example_columns, open_store_for


def top_indices(W: Any, k: int, components: Sequence[int] | None = None) -> dict[int, np.ndarray]:
    """Per component, the indices of its (at most) ``k`` top examples, best first.

    Args:
        W: coefficients ``[m, C]``.
        k: how many examples per component, ``1 <= k <= m``.
        components: which components (all when None or empty).

    Returns:
        ``{component: indices}``, each an integer array of length ``<= k`` (shorter when fewer
        examples have a positive coefficient). Only examples with a positive coefficient count;
        equal coefficients go by example index.

    Notes:
        One stable sort of the positive entries of each column: ``O(m log m)`` time, ``O(m)``
        extra memory per component.
    """
    W = as_coefficient_matrix(W)
    m, n_components = W.shape
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
    if k > m:
        raise InvalidArgumentError(f"k={k} is larger than the number of examples ({m})")
    result = {}
    for c in component_list(components, n_components):
        column = W[:, c]
        positive = np.flatnonzero(column > 0)  # in index order, which a stable sort keeps on ties
        result[c] = positive[np.argsort(-column[positive], kind="stable")[:k]]
    return result


def top_examples(decomposition, store=None, *, k: int = 16, components: Sequence[int] | None = None) -> list[dict]:
    """Per component, its top ``k`` examples with text, label, prediction and coefficient.

    ``store``: a path or handle; by default the store the decomposition records (checked to be
    the one it was computed from).
    """
    store = open_store_for(decomposition, store)
    W = decomposition.W
    columns = example_columns(store)
    counts = nonzero_counts(W)
    out = []
    for c, idx in top_indices(W, k, components).items():
        out.append({"component": c, "n_nonzero": int(counts[c]), "examples": [
            {"rank": rank + 1, "example_index": int(i), "coefficient": float(W[i, c]),
             "text": columns["text"][i], "label": columns["label"][i], "prediction": columns["prediction"][i],
             "source_id": columns["source_id"][i]}
            for rank, i in enumerate(idx)]})
    return out


__all__ = ["top_examples", "top_indices"]
