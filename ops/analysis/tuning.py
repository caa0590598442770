"""The paper's automated tuning analysis (section 3, Table 1).

A component is **prediction-tuned** (**label-tuned**) when all of its top ``TUNING_TOP`` (16)
examples share one prediction (one gold label); **LnP** means label- but not prediction-tuned.
Components with fewer than 16 examples in their effective support (coefficients above
``threshold`` times the component's largest, see :mod:`npeff.ops.analysis.coefficients`) are
excluded and counted. Percentages are over the components included, as in the paper's Table 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from npeff.errors import InvalidArgumentError
from npeff.ops.analysis.coefficients import (DEFAULT_SUPPORT_THRESHOLD, as_coefficient_matrix, check_support_threshold,
                                             nonzero_counts, support_counts)
from npeff.ops.analysis.source_store import example_columns, open_store_for
from npeff.ops.analysis.ranking import top_indices

TUNING_TOP = 16

#: the attribute of :class:`ComponentTuning` behind each kind of :meth:`Tunings.percentage`
_TUNING_ATTRIBUTES = {"prediction": "prediction_tuned", "label": "label_tuned", "lnp": "lnp"}


def _shared_value(values: np.ndarray) -> Any:
    """The one value all entries share, or None (also None when any entry is missing)."""
    if len(values) == 0 or any(v is None for v in values):
        return None
    first = values[0]
    return first if all(v == first for v in values) else None


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (for JSON)."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True)
class ComponentTuning:
    """The tuning of one component.

    ``n_nonzero`` counts its positive coefficients, ``n_effective`` the examples in its effective
    support; ``included`` when ``n_effective`` reaches the tunings' ``top``.
    """

    component: int
    n_nonzero: int
    included: bool
    prediction: Any  # the shared prediction of the top examples, or None
    label: Any  # the shared gold label, or None
    n_effective: int

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
        return {"component": self.component, "n_nonzero": self.n_nonzero, "n_effective": self.n_effective,
                "included": self.included,
                "prediction_tuned": self.prediction_tuned, "label_tuned": self.label_tuned, "lnp": self.lnp,
                "prediction": _plain(self.prediction), "label": _plain(self.label)}


@dataclass(frozen=True)
class Tunings:
    """The tunings of every component of a decomposition, and their percentages."""

    components: tuple[ComponentTuning, ...]
    labels_available: bool
    top: int = TUNING_TOP
    support_threshold: float = DEFAULT_SUPPORT_THRESHOLD

    @property
    def included(self) -> list[ComponentTuning]:
        return [c for c in self.components if c.included]

    def percentage(self, kind: str) -> float | None:
        """Percentage of the included components with tuning ``kind`` (prediction, label or lnp).

        None when no component is included, or for ``label``/``lnp`` without gold labels.
        """
        if kind not in _TUNING_ATTRIBUTES:
            raise InvalidArgumentError(f"tuning kind must be prediction, label or lnp, got {kind!r}")
        if kind != "prediction" and not self.labels_available:
            return None
        included = self.included
        if not included:
            return None
        return 100.0 * sum(getattr(c, _TUNING_ATTRIBUTES[kind]) for c in included) / len(included)

    def summary(self) -> dict:
        return {
            "n_components": len(self.components), "n_included": len(self.included),
            "n_excluded": len(self.components) - len(self.included), "top": self.top,
            "support_threshold": self.support_threshold,
            "labels_available": self.labels_available,
            "prediction_tuned_pct": self.percentage("prediction"),
            "label_tuned_pct": self.percentage("label"), "lnp_tuned_pct": self.percentage("lnp"),
        }

    def to_dict(self) -> dict:
        return {"summary": self.summary(), "components": [c.to_dict() for c in self.components]}


def compute_tunings(W: Any, labels: Sequence, predictions: Sequence, *, top: int = TUNING_TOP,
                    tops: dict[int, np.ndarray] | None = None,
                    support_threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> Tunings:
    """The paper's automated tuning analysis of every component of ``W``.

    Args:
        W: coefficients ``[m, C]``.
        labels, predictions: one entry per example (None where unknown).
        top: a component needs ``top`` examples in its effective support to be included, and is
            tuned when its top ``top`` examples agree.
        tops: the caller's :func:`top_indices` of every component for some ``k >= top`` (with the
            same ``support_threshold``), to sort each column only once.
        support_threshold: the effective support's threshold, a fraction of each component's largest
            coefficient (0: every positive coefficient counts).

    Notes:
        Memory: a ``[m, C]`` boolean mask for the counts and one sorted column at a time.
    """
    W = as_coefficient_matrix(W)
    m = W.shape[0]
    labels = np.asarray(list(labels), dtype=object)
    predictions = np.asarray(list(predictions), dtype=object)
    if len(labels) != m or len(predictions) != m:
        raise InvalidArgumentError(f"W has {m} examples but got {len(labels)} labels and "
                                   f"{len(predictions)} predictions")
    support_threshold = check_support_threshold(support_threshold)
    raw, counts = nonzero_counts(W), support_counts(W, support_threshold)
    if tops is None:
        tops = top_indices(W, min(top, m), support_threshold=support_threshold)
    result = []
    for c in range(W.shape[1]):
        included = bool(counts[c] >= top)
        idx = tops[c][:top]
        result.append(ComponentTuning(
            component=c, n_nonzero=int(raw[c]), included=included,
            prediction=_shared_value(predictions[idx]) if included else None,
            label=_shared_value(labels[idx]) if included else None, n_effective=int(counts[c])))
    labels_available = any(v is not None for v in labels)
    return Tunings(tuple(result), labels_available, top, support_threshold)


def tunings(decomposition, store=None, *, top: int = TUNING_TOP,
            support_threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> Tunings:
    """:func:`compute_tunings` of a decomposition (or fitted coefficients) with the labels and
    predictions of its store."""
    store = open_store_for(decomposition, store)
    columns = example_columns(store)
    return compute_tunings(decomposition.W, columns["label"], columns["prediction"], top=top,
                           support_threshold=support_threshold)


__all__ = ["TUNING_TOP", "ComponentTuning", "Tunings", "compute_tunings", "tunings"]
