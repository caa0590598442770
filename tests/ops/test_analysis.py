"""Top examples, tunings and the comparison of decompositions, on hand-made cases with known answers."""

import itertools

import numpy as np
import pytest

from npeff.errors import IncompatibleStoresError, InvalidArgumentError, StoreNotFoundError
from npeff.ops import analysis
from tests.ops.analysis_helpers import hand_made_decomposition, known_tunings_case, small_store


def naive_similarity(W_a, W_b):
    """Section 4 written out: per component, the best cosine with the other side; mean over all."""
    def cos(x, y):
        nx, ny = np.linalg.norm(x), np.linalg.norm(y)
        return 0.0 if nx == 0 or ny == 0 else float(x @ y / (nx * ny))

    best = [max(cos(W_a[:, i], W_b[:, j]) for j in range(W_b.shape[1])) for i in range(W_a.shape[1])]
    best += [max(cos(W_a[:, i], W_b[:, j]) for i in range(W_a.shape[1])) for j in range(W_b.shape[1])]
    return sum(best) / len(best)


def test_top_indices_order_ties_and_zeros():
    W = np.array([[0.5, 0.0], [0.9, 0.0], [0.5, 2.0], [0.0, 0.0], [0.9, 1.0]])
    top = analysis.top_indices(W, 5)
    assert top[0].tolist() == [1, 4, 0, 2]  # ties by index; the zero coefficient is never listed
    assert top[1].tolist() == [2, 4]
    assert analysis.top_indices(W, 2, [0])[0].tolist() == [1, 4]
    assert list(analysis.top_indices(W, 1, [1])) == [1]


@pytest.mark.parametrize("k, components, message", [
    (6, None, "larger than the number of examples"), (0, None, "positive integer"),
    (2, [2], "out of range"), (2, [-1], "out of range"),
])
def test_top_indices_bad_input(k, components, message):
    with pytest.raises(InvalidArgumentError, match=message):
        analysis.top_indices(np.ones((5, 2)), k, components)


def test_tunings_on_a_known_case():
    W, labels, predictions = known_tunings_case()
    result = analysis.compute_tunings(W, labels, predictions)
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


def test_tunings_without_labels_and_with_nothing_included():
    W, _, predictions = known_tunings_case()
    result = analysis.compute_tunings(W, [None] * len(predictions), predictions)
    assert result.summary()["label_tuned_pct"] is None and result.summary()["lnp_tuned_pct"] is None
    assert result.summary()["prediction_tuned_pct"] == pytest.approx(50.0)
    tiny = analysis.compute_tunings(np.eye(4), [0] * 4, [0] * 4)
    assert tiny.summary()["n_included"] == 0 and tiny.summary()["prediction_tuned_pct"] is None
    with pytest.raises(InvalidArgumentError, match="labels"):
        analysis.compute_tunings(W, [0], predictions)


def test_similarity_against_naive_and_invariances():
    rng = np.random.default_rng(0)
    W_a = rng.random((50, 6)) * (rng.random((50, 6)) > 0.5)
    W_b = rng.random((50, 9)) * (rng.random((50, 9)) > 0.6)
    W_b[:, 3] = 0.0  # a dead component has cosine 0 with everything
    assert analysis.similarity_score(W_a, W_b) == pytest.approx(naive_similarity(W_a, W_b), rel=1e-12)
    assert analysis.similarity_score(W_a, W_a) == pytest.approx(1.0)
    assert analysis.similarity_score(W_a, 3.0 * W_a[:, ::-1]) == pytest.approx(1.0)
    for permutation in itertools.islice(itertools.permutations(range(6)), 0, 720, 97):
        assert analysis.similarity_score(W_a[:, permutation], W_b) == pytest.approx(
            analysis.similarity_score(W_a, W_b), rel=1e-12)
    assert analysis.similarity_score(W_a, W_b) == pytest.approx(analysis.similarity_score(W_b, W_a))
    with pytest.raises(IncompatibleStoresError, match="numbers of examples"):
        analysis.similarity_score(W_a, W_b[:40])


def test_split_map_and_tunings_preserved():
    m = 96
    predictions = [i // 48 for i in range(m)]  # first half predicts 0, second half 1
    coarse = np.zeros((m, 2))
    coarse[:48, 0] = np.linspace(1, 0.5, 48)
    coarse[48:, 1] = np.linspace(1, 0.5, 48)
    fine = np.zeros((m, 4))
    fine[:24, 0], fine[24:48, 1] = coarse[:24, 0], coarse[24:48, 0]
    fine[48:72, 2], fine[72:, 3] = coarse[48:72, 1], coarse[72:, 1]
    fine[:, [1, 2]] = fine[:, [2, 1]]  # the order of components does not matter
    result = analysis.split_map(fine, coarse, predictions=predictions)
    assert (result["coarse"], result["fine"]) == ("b", "a")
    assert result["splits"] == {0: [0, 2], 1: [1, 3]}
    assert result["coarse_matched_fraction"] == 1.0
    assert result["n_tuned_matches"] == 4 and result["tunings_preserved"] == 1.0
    # a fine split whose top examples mix predictions is not preserved
    predictions[30] = 1
    result = analysis.split_map(coarse, fine, predictions=predictions)
    assert result["tunings_preserved"] == pytest.approx(3 / 4)


def test_decomposition_and_store_together(tmp_path):
    W, labels, predictions = known_tunings_case()
    store = small_store(tmp_path / "store", labels=labels, predictions=predictions)
    decomposition = hand_made_decomposition(tmp_path / "d", store, W)
    top = analysis.top_examples(decomposition, k=3, components=[1])
    assert [e["example_index"] for e in top[0]["examples"]] == [16, 17, 18]
    assert top[0]["examples"][0]["text"] == "example number 16"
    assert top[0]["examples"][0]["coefficient"] == pytest.approx(1.0)
    assert top[0]["n_nonzero"] == 16
    assert analysis.tunings(decomposition).summary()["lnp_tuned_pct"] == pytest.approx(25.0)
    assert analysis.label_names(store) == ["neg", "pos"]

    other = small_store(tmp_path / "other", labels=labels, predictions=[1 - p for p in predictions])
    with pytest.raises(IncompatibleStoresError, match="does not hold the examples"):
        analysis.top_examples(decomposition, other)
    shorter = small_store(tmp_path / "short", labels=labels[:40], predictions=predictions[:40])
    with pytest.raises(IncompatibleStoresError, match="40 examples"):
        analysis.tunings(decomposition, shorter)
    with pytest.raises(InvalidArgumentError, match="larger than the number of examples"):
        analysis.top_examples(decomposition, k=65)


def test_compare_decompositions(tmp_path):
    W, labels, predictions = known_tunings_case()
    store = small_store(tmp_path / "store", labels=labels, predictions=predictions)
    a = hand_made_decomposition(tmp_path / "a", store, W)
    b = hand_made_decomposition(tmp_path / "b", store, W[:, [3, 0, 4, 2, 1]])
    result = analysis.compare(a, b)
    assert result["similarity"] == pytest.approx(1.0)
    assert result["split_map"]["tunings_preserved"] == 1.0
    assert analysis.compare(a, a)["similarity"] == pytest.approx(1.0)

    other_store = small_store(tmp_path / "other", labels=labels, predictions=predictions[::-1])
    c = hand_made_decomposition(tmp_path / "c", other_store, W)
    with pytest.raises(IncompatibleStoresError, match="different stores"):
        analysis.compare(a, c)

    # the recorded store is gone: the similarity still works, the tunings preserved do not
    import shutil

    shutil.rmtree(tmp_path / "store")
    result = analysis.compare(a, b)
    assert result["similarity"] == pytest.approx(1.0) and result["split_map"]["tunings_preserved"] is None
    with pytest.raises(StoreNotFoundError, match="pass --store"):
        analysis.tunings(a)
