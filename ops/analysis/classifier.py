"""The tuning classifier of the paper's section 3.3 (Table 3): components vote for the labels their
top examples share, and an example is classified by its coefficients' weighted votes.

With ``V`` ``[L, C]``, ``V[l, j] = 1`` when at least ``threshold`` (75%) of component ``j``'s top 16
examples have gold label ``l`` (and the component has at least 16 examples with a non-zero
coefficient, i.e. in its effective support, see :mod:`npeff.ops.analysis.coefficients`; for
gradient clusters, its members), the prediction for an example with coefficients
``w`` ``[C]`` is ``argmax_l (V w)_l``, with ``w`` kept to the effective supports (a coefficient
below the support threshold times its component's largest counts as zero). An example none of
whose components votes (``V w = 0``) gets no prediction: it counts as wrong in the accuracy and is
reported as abstained.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from npeff.errors import InvalidArgumentError
from npeff.ops.analysis.coefficients import DEFAULT_SUPPORT_THRESHOLD, as_coefficient_matrix, support_mask
from npeff.ops.analysis.ranking import top_indices
from npeff.ops.analysis.tuning import TUNING_TOP

#: the paper's vote threshold: 75% of the top 16 examples share the label
DEFAULT_THRESHOLD = 0.75


@dataclasses.dataclass(frozen=True)
class TuningClassifier:
    """The classifier and how it does.

    Attributes:
        classes: the label values, in the order of ``votes``' rows.
        votes: ``V`` ``[L, C]`` of zeros and ones.
        predictions: ``[m]`` predicted label per example (None where no component votes).
        accuracy: fraction of the examples with a gold label predicted correctly (abstentions wrong).
        agreement: fraction of the examples whose prediction equals the model's prediction.
        abstained: fraction of the examples without a prediction.
        n_voting: components that vote for some label.
    """

    classes: tuple
    votes: np.ndarray
    predictions: tuple
    accuracy: float | None
    agreement: float | None
    abstained: float
    n_voting: int
    threshold: float
    support_threshold: float = DEFAULT_SUPPORT_THRESHOLD

    def summary(self) -> dict:
        return {"accuracy": self.accuracy, "agreement_with_model": self.agreement, "abstained": self.abstained,
                "n_voting_components": self.n_voting, "n_components": int(self.votes.shape[1]),
                "threshold": self.threshold, "support_threshold": self.support_threshold,
                "classes": [_plain(c) for c in self.classes]}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _fraction(hits: Sequence[bool]) -> float | None:
    return float(np.mean(hits)) if len(hits) else None


def tuning_classifier(W: Any, labels: Sequence, predictions: Sequence | None = None, *,
                      threshold: float = DEFAULT_THRESHOLD, top: int = TUNING_TOP,
                      support_threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> TuningClassifier:
    """Build and score the tuning classifier of ``W`` ``[m, C]`` (paper, section 3.3).

    Args:
        W: coefficients (or a clustering's membership scores) ``[m, C]``.
        labels: gold label per example (None where unknown): they define the votes and the accuracy.
        predictions: the model's prediction per example, for the agreement (optional).
        threshold: the share of a component's top examples that must have a label for it to vote,
            in ``(0.5, 1]`` so a component votes for at most one label.
        top: how many top examples are looked at (16); a component votes only with at least
            ``top`` examples in its effective support.
        support_threshold: the effective support's threshold (a fraction of each component's
            largest coefficient; 0: every positive coefficient counts).

    Notes:
        Memory: ``W``, an ``[m, C]`` mask and copy of it, and its ``[m, L]`` scores.
    """
    W = as_coefficient_matrix(W)
    m, c = W.shape
    labels = list(labels)
    if len(labels) != m:
        raise InvalidArgumentError(f"W has {m} examples but got {len(labels)} labels")
    if predictions is not None and len(predictions) != m:
        raise InvalidArgumentError(f"W has {m} examples but got {len(predictions)} predictions")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.5 < threshold <= 1:
        raise InvalidArgumentError(f"the vote threshold must be in (0.5, 1], got {threshold!r}")
    classes = tuple(sorted({v for v in labels if v is not None}))
    if not classes:
        raise InvalidArgumentError("the tuning classifier needs gold labels; the store has none")
    index = {value: i for i, value in enumerate(classes)}
    votes = np.zeros((len(classes), c))
    supported = support_mask(W, support_threshold)  # [m, C]
    counts = supported.sum(axis=0)
    tops = top_indices(W, min(top, m), support_threshold=support_threshold)
    for j in range(c):
        if counts[j] < top:
            continue
        top_labels = [labels[i] for i in tops[j][:top]]
        for value in set(top_labels) - {None}:
            if top_labels.count(value) >= threshold * top:
                votes[index[value], j] = 1.0
    scores = np.where(supported, W, 0) @ votes.T  # [m, L]: coefficients outside the supports are zeros
    predicted = tuple(classes[int(np.argmax(row))] if row.max() > 0 else None for row in scores)
    known = [i for i in range(m) if labels[i] is not None]
    accuracy = _fraction([predicted[i] == labels[i] for i in known])
    agreement = None
    if predictions is not None:
        agreement = _fraction([predicted[i] is not None and predicted[i] == predictions[i]
                               for i in range(m) if predictions[i] is not None])
    return TuningClassifier(classes=classes, votes=votes, predictions=predicted, accuracy=accuracy,
                            agreement=agreement, abstained=float(np.mean([p is None for p in predicted])),
                            n_voting=int((votes.sum(axis=0) > 0).sum()), threshold=float(threshold),
                            support_threshold=float(support_threshold))


__all__ = ["DEFAULT_THRESHOLD", "TuningClassifier", "tuning_classifier"]
