"""The tuning classifier (section 3.3) on hand-made cases, against a naive reading of the rule."""

import numpy as np
import pytest

from npeff.errors import InvalidArgumentError
from npeff.ops.analysis import tuning_classifier


def test_votes_predictions_accuracy_and_agreement():
    m = 40
    labels = [0] * 20 + [1] * 20
    W = np.zeros((m, 3))
    W[0:16, 0] = np.linspace(1, 0.5, 16)            # top 16: all label 0 -> votes 0
    W[20:36, 1] = np.linspace(1, 0.5, 16)           # top 16: all label 1 -> votes 1
    W[[*range(8, 16), *range(28, 36)], 2] = 1.0        # 8 of each: no label reaches 75% -> no vote
    W[16, 0], W[16, 1] = 0.2, 0.9                    # example 16 (label 0): component 1 weighs more -> 1
    labels_13 = list(labels)
    labels_13[3] = labels_13[4] = labels_13[5] = labels_13[6] = 1   # 12 of 16 are 0 in component 0: still 75%
    for case_labels in (labels, labels_13):
        result = tuning_classifier(W, case_labels, predictions=[0] * m)
        assert result.votes.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
        assert result.n_voting == 2 and result.classes == (0, 1)
        expected = [0 if W[i, 0] > W[i, 1] else (1 if W[i, 1] > 0 else None) for i in range(m)]
        assert list(result.predictions) == expected
        assert result.abstained == pytest.approx(np.mean([p is None for p in expected]))
        assert result.accuracy == pytest.approx(np.mean([p == y for p, y in zip(expected, case_labels)]))
        assert result.agreement == pytest.approx(np.mean([p == 0 for p in expected]))
    labels_11 = list(labels)
    for i in range(3, 8):
        labels_11[i] = 1                             # 11 of 16: below 75%, component 0 no longer votes
    assert tuning_classifier(W, labels_11).votes[:, 0].tolist() == [0.0, 0.0]


def test_components_with_fewer_than_16_examples_do_not_vote():
    W = np.zeros((30, 1))
    W[:15, 0] = 1.0
    result = tuning_classifier(W, [0] * 30)
    assert result.n_voting == 0 and result.abstained == 1.0 and result.accuracy == 0.0


def test_votes_count_the_effective_support():
    """15 real coefficients and one of 1e-12: the component votes only when every positive one counts."""
    W = np.zeros((30, 1))
    W[:15, 0] = 1.0
    W[15, 0] = 1e-12
    assert tuning_classifier(W, [0] * 30).n_voting == 0
    raw = tuning_classifier(W, [0] * 30, support_threshold=0.0)
    assert raw.n_voting == 1 and raw.summary()["support_threshold"] == 0.0


def test_coefficients_outside_the_support_cast_no_vote():
    """Example 20's only coefficient, 1e-12, is below the support: it abstains (at threshold 0 it is
    classified by its voting component)."""
    W = np.zeros((30, 1))
    W[:16, 0] = 1.0
    W[20, 0] = 1e-12
    labels = [0] * 16 + [1] * 14
    assert tuning_classifier(W, labels).predictions[20] is None
    assert tuning_classifier(W, labels, support_threshold=0.0).predictions[20] == 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(W=np.ones((3, 2)), labels=[0, 1]), "3 examples but got 2 labels"),
    (dict(W=np.ones((3, 2)), labels=[None] * 3), "needs gold labels"),
    (dict(W=np.ones((3, 2)), labels=[0, 1, 0], threshold=0.5), "threshold"),
    (dict(W=np.ones((3, 2)), labels=[0, 1, 0], predictions=[0]), "1 predictions"),
    (dict(W=np.ones((3, 2)), labels=[0, 1, 0], support_threshold=1.0), "support threshold"),
])
def test_bad_inputs(kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        tuning_classifier(**kwargs)
