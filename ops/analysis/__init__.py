"""What the components mean: top examples, tunings and the similarity of two decompositions.

Section 3 of the NPEFF paper. Everything here works on the coefficient matrix ``W`` ``[m, C]`` and
the store's per-example table (text, label, prediction); nothing reads the PEF tensor.

- A component's **top examples** are the examples with the largest positive coefficients, ties
  broken by the lower example index; examples with a zero coefficient are never "top".
- A component is **prediction-tuned** (**label-tuned**) when all of its top ``TUNING_TOP`` (16)
  examples share one prediction (one gold label); **LnP** means label- but not prediction-tuned.
  Components with fewer than 16 examples of non-zero coefficient are excluded and counted.
  Percentages are over the components included, as in the paper's Table 1.
- The **similarity score** of two decompositions is the mean over all components of both of the
  best cosine similarity of a component's coefficient vector with the other side's (section 4).
- The **split map** sends each component of the finer decomposition (more components) to the
  coarser component it is most similar to; the fraction of **tunings preserved** is, over the
  fine components mapped to prediction-tuned coarse ones, the fraction prediction-tuned to the same
  prediction (appendix F).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from npeff.errors import IncompatibleStoresError, InvalidArgumentError

TUNING_TOP = 16


def _as_matrix(W: Any, name: str = "W") -> np.ndarray:
    W = np.asarray(W)
    if W.ndim != 2:
        raise InvalidArgumentError(f"{name} must be a matrix [examples, components], got shape {W.shape}")
    if W.shape[1] < 1:
        raise InvalidArgumentError(f"{name} has no components")
    if not np.issubdtype(W.dtype, np.number) or not np.all(np.isfinite(W)):
        raise InvalidArgumentError(f"{name} must hold finite numbers")
    return W


def _component_list(components: Sequence[int] | None, n_components: int) -> list[int]:
    if components is None or len(components) == 0:
        return list(range(n_components))
    out = []
    for c in components:
        if not isinstance(c, (int, np.integer)) or not 0 <= c < n_components:
            raise InvalidArgumentError(f"component {c} is out of range: the decomposition has components "
                                       f"0..{n_components - 1}")
        out.append(int(c))
    return out


def top_indices(W: Any, k: int, components: Sequence[int] | None = None) -> dict[int, np.ndarray]:
    """Per component, the indices of its (at most) ``k`` top examples, best first.

    Only examples with a positive coefficient count; equal coefficients go by example index.
    """
    W = _as_matrix(W)
    m, n_components = W.shape
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k must be a positive integer, got {k!r}")
    if k > m:
        raise InvalidArgumentError(f"k={k} is larger than the number of examples ({m})")
    result = {}
    for c in _component_list(components, n_components):
        column = W[:, c]
        positive = np.flatnonzero(column > 0)  # in index order, which a stable sort keeps on ties
        result[c] = positive[np.argsort(-column[positive], kind="stable")[:k]]
    return result


def nonzero_counts(W: Any) -> np.ndarray:
    """Per component, how many examples have a positive coefficient."""
    return (_as_matrix(W) > 0).sum(axis=0)


def _shared_value(values: np.ndarray) -> Any:
    """The one value all entries share, or None (also None when any entry is missing)."""
    if len(values) == 0 or any(v is None for v in values):
        return None
    first = values[0]
    return first if all(v == first for v in values) else None


@dataclass(frozen=True)
class ComponentTuning:
    component: int
    n_nonzero: int
    included: bool
    prediction: Any  # the shared prediction of the top examples, or None
    label: Any  # the shared gold label, or None

    @property
    def prediction_tuned(self) -> bool:
        return self.included and self.prediction is not None

    @property
    def label_tuned(self) -> bool:
        return self.included and self.label is not None

    @property
    def lnp(self) -> bool:
        return self.label_tuned and not self.prediction_tuned

    def to_dict(self) -> dict:
        return {"component": self.component, "n_nonzero": self.n_nonzero, "included": self.included,
                "prediction_tuned": self.prediction_tuned, "label_tuned": self.label_tuned, "lnp": self.lnp,
                "prediction": _plain(self.prediction), "label": _plain(self.label)}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class Tunings:
    components: tuple[ComponentTuning, ...]
    labels_available: bool
    top: int = TUNING_TOP

    @property
    def included(self) -> list[ComponentTuning]:
        return [c for c in self.components if c.included]

    def percentage(self, kind: str) -> float | None:
        """Percentage of the included components with tuning ``kind`` (prediction, label or lnp)."""
        if kind not in ("prediction", "label", "lnp"):
            raise InvalidArgumentError(f"tuning kind must be prediction, label or lnp, got {kind!r}")
        if kind != "prediction" and not self.labels_available:
            return None
        included = self.included
        if not included:
            return None
        attribute = {"prediction": "prediction_tuned", "label": "label_tuned", "lnp": "lnp"}[kind]
        return 100.0 * sum(getattr(c, attribute) for c in included) / len(included)

    def summary(self) -> dict:
        return {
            "n_components": len(self.components), "n_included": len(self.included),
            "n_excluded": len(self.components) - len(self.included), "top": self.top,
            "labels_available": self.labels_available,
            "prediction_tuned_pct": self.percentage("prediction"),
            "label_tuned_pct": self.percentage("label"), "lnp_tuned_pct": self.percentage("lnp"),
        }

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "components": [c.to_dict() for c in self.components]}


def compute_tunings(W: Any, labels: Sequence, predictions: Sequence, *, top: int = TUNING_TOP,
                    tops: dict[int, np.ndarray] | None = None) -> Tunings:
    """The paper's automated tuning analysis of every component of ``W``.

    ``labels`` and ``predictions`` hold one entry per example (None where unknown). A component needs
    ``top`` examples with a non-zero coefficient to be included. ``tops``: the caller's
    :func:`top_indices` of every component for some ``k >= top``, to sort each column only once.
    """
    W = _as_matrix(W)
    m = W.shape[0]
    labels = np.asarray(list(labels), dtype=object)
    predictions = np.asarray(list(predictions), dtype=object)
    if len(labels) != m or len(predictions) != m:
        raise InvalidArgumentError(f"W has {m} examples but got {len(labels)} labels and "
                                   f"{len(predictions)} predictions")
    counts = nonzero_counts(W)
    if tops is None:
        tops = top_indices(W, min(top, m))
    result = []
    for c in range(W.shape[1]):
        included = bool(counts[c] >= top)
        idx = tops[c][:top]
        result.append(ComponentTuning(
            component=c, n_nonzero=int(counts[c]), included=included,
            prediction=_shared_value(predictions[idx]) if included else None,
            label=_shared_value(labels[idx]) if included else None))
    labels_available = any(v is not None for v in labels)
    return Tunings(tuple(result), labels_available, top)


def cosine_matrix(W_a: Any, W_b: Any) -> np.ndarray:
    """Cosine similarities ``[C_a, C_b]`` of the coefficient vectors (columns); 0 for a zero column."""
    W_a, W_b = _as_matrix(W_a, "W_a").astype(np.float64), _as_matrix(W_b, "W_b").astype(np.float64)
    if W_a.shape[0] != W_b.shape[0]:
        raise IncompatibleStoresError(
            f"the decompositions cover different numbers of examples ({W_a.shape[0]} and {W_b.shape[0]}); "
            "they must come from the same store")
    norm_a, norm_b = np.linalg.norm(W_a, axis=0), np.linalg.norm(W_b, axis=0)
    unit_a = W_a / np.where(norm_a > 0, norm_a, 1.0)
    unit_b = W_b / np.where(norm_b > 0, norm_b, 1.0)
    return unit_a.T @ unit_b


def similarity_score(W_a: Any, W_b: Any) -> float:
    """Mean over all components of both decompositions of the best cosine with the other side."""
    cos = cosine_matrix(W_a, W_b)
    return float(np.concatenate([cos.max(axis=1), cos.max(axis=0)]).mean())


def split_map(W_a: Any, W_b: Any, *, predictions: Sequence | None = None, top: int = TUNING_TOP) -> dict:
    """Map each component of the finer decomposition to its most similar coarser one.

    The coarser side is the one with fewer components (``a`` on a tie). With ``predictions``, also
    the fraction of tunings preserved (appendix F); None when no coarse component is
    prediction-tuned or no predictions are given.
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
        none = [None] * len(predictions)
        coarse_t = compute_tunings(W_coarse, none, predictions, top=top).components
        fine_t = compute_tunings(W_fine, none, predictions, top=top).components
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


# ---- decompositions and stores together ------------------------------------------------------------

def check_belongs(decomposition, store) -> None:
    """Refuse a store that is not the one ``decomposition`` was computed from."""
    manifest = decomposition.manifest
    m = decomposition.W.shape[0]
    if store.num_examples != m:
        raise IncompatibleStoresError(
            f"{store.path} has {store.num_examples} examples but the decomposition {decomposition.path} "
            f"has coefficients for {m}: they do not belong together")
    fingerprint = manifest.get("store_fingerprint")
    if fingerprint is not None and fingerprint != store.fingerprint:
        raise IncompatibleStoresError(
            f"{store.path} was not built with the projection and parameter layout of the store "
            f"{decomposition.path} was computed from (fingerprint {store.fingerprint} != {fingerprint})")
    content = manifest.get("store_content_id")
    if content is not None and content != store.content_id:
        raise IncompatibleStoresError(
            f"{store.path} does not hold the examples {decomposition.path} was computed from "
            "(its shards' checksums differ)")


def open_store_for(decomposition, store=None):
    """The store given (path or handle), else the one the decomposition records; checked to belong."""
    from npeff.errors import StoreNotFoundError
    from npeff.store import PefStore, open_store

    if store is None:
        recorded = decomposition.manifest.get("store")
        if recorded is None:
            raise InvalidArgumentError(f"{decomposition.path} records no store; pass --store")
        try:
            store = open_store(recorded)
        except StoreNotFoundError:
            raise StoreNotFoundError(
                f"the store {recorded} recorded by {decomposition.path} is not there; pass --store") from None
    elif not isinstance(store, PefStore):
        store = open_store(store)
    check_belongs(decomposition, store)
    return store


def example_columns(store) -> dict[str, list]:
    table = store.examples
    return {name: table.column(name).to_pylist()
            for name in ("example_index", "source_id", "text", "label", "prediction", "status")}


def label_name(value: Any, names: Sequence[str] | None) -> str:
    """A class index as its name when the store knows it (``-`` for a missing value)."""
    if value is None:
        return "-"
    if names is not None and isinstance(value, int) and 0 <= value < len(names):
        return names[value].strip()
    return str(value)


def label_names(store) -> list[str] | None:
    spec = store.config.pef_spec or {}
    names = spec.get("label_names") or spec.get("labels")
    return [str(n) for n in names] if names else None


def top_examples(decomposition, store=None, *, k: int = 16, components: Sequence[int] | None = None) -> list[dict]:
    """Per component, its top ``k`` examples with text, label, prediction and coefficient."""
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


def tunings(decomposition, store=None, *, top: int = TUNING_TOP) -> Tunings:
    store = open_store_for(decomposition, store)
    columns = example_columns(store)
    return compute_tunings(decomposition.W, columns["label"], columns["prediction"], top=top)


def compare(decomposition_a, decomposition_b, store=None, *, top: int = TUNING_TOP) -> dict:
    """Similarity score and split map of two decompositions of the same store."""
    a_id = decomposition_a.manifest.get("store_content_id")
    b_id = decomposition_b.manifest.get("store_content_id")
    if a_id is not None and b_id is not None and a_id != b_id:
        raise IncompatibleStoresError(
            f"{decomposition_a.path} and {decomposition_b.path} were computed from different stores")
    predictions = None
    if store is not None or decomposition_a.manifest.get("store") is not None:
        try:
            opened = open_store_for(decomposition_a, store)
        except FileNotFoundError:
            if store is not None:
                raise
            opened = None  # the recorded store is gone: compare coefficients only
        if opened is not None:
            check_belongs(decomposition_b, opened)
            predictions = example_columns(opened)["prediction"]
    W_a, W_b = decomposition_a.W, decomposition_b.W
    return {
        "a": str(decomposition_a.path), "b": str(decomposition_b.path),
        "n_components_a": W_a.shape[1], "n_components_b": W_b.shape[1],
        "similarity": similarity_score(W_a, W_b),
        "split_map": split_map(W_a, W_b, predictions=predictions, top=top),
    }


__all__ = ["TUNING_TOP", "ComponentTuning", "Tunings", "check_belongs", "compare", "compute_tunings",
           "cosine_matrix", "label_name", "label_names", "nonzero_counts", "open_store_for", "similarity_score",
           "split_map", "top_examples", "top_indices", "tunings"]
