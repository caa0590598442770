"""The tuning analysis on hand-made cases with known answers."""

import numpy as np
import pytest

from npeff.errors import InvalidArgumentError
from npeff.ops.analysis.tuning import compute_tunings, tunings
from tests.ops.analysis.helpers import hand_made_decomposition, known_tunings_case, small_store


def test_tunings_on_a_known_case():
    W, labels, predictions = known_tunings_case()
    result = compute_tunings(W, labels, predictions)
    flags = [(c.included, c.prediction_tuned, c.label_tuned, c.lnp) for c in result.components]
    assert flags == [
        (True, True, True, False),
        (True, False, True, True),
        (True, True, False, False),
        (True, False, False, False),
        (False, False, False, False),
    ]
    assert result.components[0].prediction == 1 and result.components[1].label == 0
    assert result.components[2].prediction == 0
    summary = result.summary()
    assert (summary["n_included"], summary["n_excluded"]) == (4, 1)
    assert summary["prediction_tuned_pct"] == pytest.approx(50.0)
    assert summary["label_tuned_pct"] == pytest.approx(50.0)
    assert summary["lnp_tuned_pct"] == pytest.approx(25.0)


def test_tunings_without_labels():
    W, _, predictions = known_tunings_case()
    result = compute_tunings(W, [None] * len(predictions), predictions)
    assert result.summary()["label_tuned_pct"] is None and result.summary()["lnp_tuned_pct"] is None
    assert result.summary()["prediction_tuned_pct"] == pytest.approx(50.0)


def test_tunings_with_nothing_included():
    tiny = compute_tunings(np.eye(4), [0] * 4, [0] * 4)
    assert tiny.summary()["n_included"] == 0 and tiny.summary()["prediction_tuned_pct"] is None


def test_tunings_reuse_the_callers_top_examples():
    from npeff.ops.analysis.ranking import top_indices

    W, labels, predictions = known_tunings_case()
    tops = top_indices(W, 20)
    assert compute_tunings(W, labels, predictions, tops=tops) == compute_tunings(W, labels, predictions)


@pytest.mark.parametrize("n_labels, n_predictions", [(1, 64), (64, 63), (65, 64)])
def test_tunings_need_one_label_and_prediction_per_example(n_labels, n_predictions):
    W, labels, predictions = known_tunings_case()
    with pytest.raises(InvalidArgumentError, match=f"{n_labels} labels and {n_predictions} predictions"):
        compute_tunings(W, (labels * 2)[:n_labels], (predictions * 2)[:n_predictions])


def test_percentage_refuses_an_unknown_kind():
    W, labels, predictions = known_tunings_case()
    with pytest.raises(InvalidArgumentError, match="prediction, label or lnp"):
        compute_tunings(W, labels, predictions).percentage("both")


def test_tunings_of_a_decomposition_read_its_store(tmp_path):
    W, labels, predictions = known_tunings_case()
    store = small_store(tmp_path / "store", labels=labels, predictions=predictions)
    decomposition = hand_made_decomposition(tmp_path / "d", store, W)
    result = tunings(decomposition)
    assert result.summary()["lnp_tuned_pct"] == pytest.approx(25.0)
    assert result.to_dict()["components"][1] == {
        "component": 1, "n_nonzero": 16, "n_effective": 16, "included": True, "prediction_tuned": False,
        "label_tuned": True, "lnp": True, "prediction": None, "label": 0}


def test_tunings_count_the_effective_support():
    """A component of 16 positive coefficients, 6 of them 1e-12: excluded at the default threshold,
    included when every positive coefficient counts."""
    W, labels, predictions = known_tunings_case()
    W[:, 4] = 0.0
    W[50:56, 4] = 1.0
    W[40:50, 4] = 1e-12  # 6 real and 10 tiny coefficients: 16 positive in all
    assert (W[:, 4] > 0).sum() == 16
    default = compute_tunings(W, labels, predictions)
    assert (default.components[4].n_nonzero, default.components[4].n_effective) == (16, 6)
    assert not default.components[4].included and default.summary()["support_threshold"] == 1e-6
    raw = compute_tunings(W, labels, predictions, support_threshold=0.0)
    assert raw.components[4].included and raw.summary()["support_threshold"] == 0.0
    assert raw.to_dict()["components"][4]["n_effective"] == 16
    with pytest.raises(InvalidArgumentError, match="support threshold"):
        compute_tunings(W, labels, predictions, support_threshold=-0.1)
