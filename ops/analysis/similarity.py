"""How alike two decompositions of the same examples are (of one store, or of two stores whose
examples are matched by id, see :mod:`npeff.ops.analysis.matching`).

- The **similarity score** is the mean over all components of both of the best cosine similarity of
  a component's coefficient vector with the other side's (section 4 of the NPEFF paper).
- The **split map** sends each component of the finer decomposition (more components) to the
  coarser component it is most similar to; the fraction of **tunings preserved** is, over the
  fine components mapped to prediction-tuned coarse ones, the fraction prediction-tuned to the same
  prediction (appendix F).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from npeff.errors import IncompatibleStoresError
from npeff.ops.analysis.coefficients import DEFAULT_SUPPORT_THRESHOLD, as_coefficient_matrix
from npeff.ops.analysis.matching import match_examples
from npeff.ops.analysis.source_store import check_belongs, example_columns, open_store_for
from npeff.ops.analysis.tuning import TUNING_TOP, compute_tunings


def cosine_matrix(W_a: Any, W_b: Any) -> np.ndarray:
    """Cosine similarities ``[C_a, C_b]`` of the coefficient vectors (columns); 0 for a zero column.

    Args:
        W_a, W_b: coefficients ``[m, C_a]`` and ``[m, C_b]`` over the same ``m`` examples.

    Notes:
        Computed in float64: two normalised copies (``m * (C_a + C_b)`` doubles) and one product.
    """
    W_a = as_coefficient_matrix(W_a, "W_a").astype(np.float64)
    W_b = as_coefficient_matrix(W_b, "W_b").astype(np.float64)
    if W_a.shape[0] != W_b.shape[0]:
        raise IncompatibleStoresError(
            f"the decompositions cover different numbers of examples ({W_a.shape[0]} and {W_b.shape[0]}); "
            "they must cover the same examples")
    norm_a, norm_b = np.linalg.norm(W_a, axis=0), np.linalg.norm(W_b, axis=0)
    unit_a = W_a / np.where(norm_a > 0, norm_a, 1.0)
    unit_b = W_b / np.where(norm_b > 0, norm_b, 1.0)
    return unit_a.T @ unit_b


def similarity_score(W_a: Any, W_b: Any) -> float:
    """Mean over all components of both decompositions of the best cosine with the other side."""
    cos = cosine_matrix(W_a, W_b)
    return float(np.concatenate([cos.max(axis=1), cos.max(axis=0)]).mean())


def split_map(W_a: Any, W_b: Any, *, predictions: Sequence | None = None, predictions_b: Sequence | None = None,
              top: int = TUNING_TOP, support_threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> dict:
    """Map each component of the finer decomposition to its most similar coarser one.

    The coarser side is the one with fewer components (``a`` on a tie). With ``predictions`` (per
    example, for ``W_a``; ``predictions_b`` for ``W_b`` when they differ, e.g. from another store),
    also the fraction of tunings preserved (appendix F); None when no coarse component is
    prediction-tuned or no predictions are given. Tunings count components by their effective
    support (``support_threshold``, see :mod:`npeff.ops.analysis.coefficients`).
    """
    cos = cosine_matrix(W_a, W_b)
    a_is_coarse = cos.shape[0] <= cos.shape[1]
    coarse_name, fine_name = ("a", "b") if a_is_coarse else ("b", "a")
    cos_cf = cos if a_is_coarse else cos.T  # [coarse, fine]
    W_coarse, W_fine = (W_a, W_b) if a_is_coarse else (W_b, W_a)
    parent = cos_cf.argmax(axis=0)  # per fine component
    splits = {int(c): [int(f) for f in np.flatnonzero(parent == c)] for c in range(cos_cf.shape[0])}
    result = {
        "coarse": coarse_name, "fine": fine_name,
        "n_coarse": cos_cf.shape[0], "n_fine": cos_cf.shape[1],
        "splits": splits,
        "parent_similarity": [float(cos_cf[parent[f], f]) for f in range(cos_cf.shape[1])],
        "coarse_matched_fraction": float(np.mean([len(v) > 0 for v in splits.values()])),
        "tunings_preserved": None, "n_tuned_matches": 0,
    }
    if predictions is not None:
        predictions_b = predictions if predictions_b is None else predictions_b
        coarse_p, fine_p = (predictions, predictions_b) if a_is_coarse else (predictions_b, predictions)
        none = [None] * len(predictions)
        coarse_t = compute_tunings(W_coarse, none, coarse_p, top=top, support_threshold=support_threshold).components
        fine_t = compute_tunings(W_fine, none, fine_p, top=top, support_threshold=support_threshold).components
        matches = preserved = 0
        for c, tuning in enumerate(coarse_t):
            if not tuning.prediction_tuned:
                continue
            for f in splits[c]:
                matches += 1
                preserved += fine_t[f].prediction_tuned and fine_t[f].prediction == tuning.prediction
        result["n_tuned_matches"] = matches
        result["tunings_preserved"] = preserved / matches if matches else None
    return result


def _different_stores(decomposition_a, decomposition_b) -> bool:
    """Whether both record their store's content id and the ids differ."""
    a_id = decomposition_a.manifest.get("store_content_id")
    b_id = decomposition_b.manifest.get("store_content_id")
    return a_id is not None and b_id is not None and a_id != b_id


def _same_store_inputs(decomposition_a, decomposition_b, store, store_b):
    """Today's comparison of two decompositions of one store: rows aligned by index; the store (given,
    or the one A records) for the predictions, or None when that one is gone."""
    if store_b is not None:
        open_store_for(decomposition_b, store_b, option="--store-b")
    if store is None and decomposition_a.manifest.get("store") is None:
        return None
    try:
        opened = open_store_for(decomposition_a, store)
    except FileNotFoundError:
        if store is not None:
            raise
        return None  # the recorded store is gone: compare coefficients only
    check_belongs(decomposition_b, opened)
    return opened


def compare(decomposition_a, decomposition_b, store=None, *, store_b=None, top: int = TUNING_TOP,
            support_threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> dict:
    """Similarity score and split map of two decompositions (or fitted coefficients) of the same examples.

    Of the same store, their rows are compared as they are. Of different stores over the same
    examples (PEFs computed another way: the EPS and SVD-rank ablation of the paper's Figure 2),
    examples are matched by id (:func:`~npeff.ops.analysis.matching.match_examples`) and each side's
    tunings use its own store's predictions.

    Args:
        decomposition_a, decomposition_b: opened decompositions or fitted coefficients.
        store: A's store (default: the one A records); for one store, the store of both.
        store_b: B's store when it is another (default: the one B records).
        top, support_threshold: as in :func:`~npeff.ops.analysis.tuning.compute_tunings`.

    The tunings preserved need the predictions: for one store, when the store A records is gone (and
    no ``store`` is given) only the coefficients are compared; different stores must both be there.

    Raises:
        IncompatibleStoresError: the store does not belong to a decomposition, or the two stores do
            not hold the same examples (ids missing, repeated or different; the message counts them).

    Notes:
        Memory: both ``W`` (B's reordered when the stores differ) and the ``[C_a, C_b]`` cosines.
    """
    W_a, W_b = decomposition_a.W, decomposition_b.W
    predictions = predictions_b = None
    if _different_stores(decomposition_a, decomposition_b):
        opened_a = open_store_for(decomposition_a, store)
        opened_b = open_store_for(decomposition_b, store_b, option="--store-b")
        order = match_examples(opened_a, opened_b)
        W_b = np.asarray(W_b)[order]
        predictions = example_columns(opened_a)["prediction"]
        predictions_b = [example_columns(opened_b)["prediction"][i] for i in order]
        matched, stores = "example id", [str(opened_a.path), str(opened_b.path)]
    else:
        opened = _same_store_inputs(decomposition_a, decomposition_b, store, store_b)
        if opened is not None:
            predictions = example_columns(opened)["prediction"]
        matched, stores = "index", [None if opened is None else str(opened.path)] * 2
    return {
        "a": str(decomposition_a.path), "b": str(decomposition_b.path),
        "n_components_a": W_a.shape[1], "n_components_b": W_b.shape[1],
        "n_examples": W_a.shape[0], "examples_matched_by": matched, "store_a": stores[0], "store_b": stores[1],
        "support_threshold": float(support_threshold),
        "similarity": similarity_score(W_a, W_b),
        "split_map": split_map(W_a, W_b, predictions=predictions, predictions_b=predictions_b, top=top,
                               support_threshold=support_threshold),
    }


__all__ = ["compare", "cosine_matrix", "similarity_score", "split_map"]
