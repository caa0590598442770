"""Similarity score, split map and the comparison of two decompositions, against known answers."""

import itertools
import shutil

import numpy as np
import pytest

from npeff.errors import IncompatibleStoresError, StoreNotFoundError
from npeff.ops.analysis.similarity import compare, cosine_matrix, similarity_score, split_map
from npeff.ops.analysis.tuning import tunings
from tests import tolerances
from tests.ops.analysis.helpers import hand_made_decomposition, known_tunings_case, small_store


def naive_similarity(W_a, W_b):
    """Section 4 written out: per component, the best cosine with the other side; mean over all."""
    def cos(x, y):
        nx, ny = np.linalg.norm(x), np.linalg.norm(y)
        return 0.0 if nx == 0 or ny == 0 else float(x @ y / (nx * ny))

    best = [max(cos(W_a[:, i], W_b[:, j]) for j in range(W_b.shape[1])) for i in range(W_a.shape[1])]
    best += [max(cos(W_a[:, i], W_b[:, j]) for i in range(W_a.shape[1])) for j in range(W_b.shape[1])]
    return sum(best) / len(best)


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    W_a = rng.random((50, 6)) * (rng.random((50, 6)) > 0.5)
    W_b = rng.random((50, 9)) * (rng.random((50, 9)) > 0.6)
    W_b[:, 3] = 0.0  # a dead component has cosine 0 with everything
    return W_a, W_b


def test_similarity_against_naive(pair):
    W_a, W_b = pair
    np.testing.assert_allclose(similarity_score(W_a, W_b), naive_similarity(W_a, W_b),
                               **tolerances.FLOAT64_REGROUPED)
    assert np.all(cosine_matrix(W_a, W_b)[:, 3] == 0.0)


def test_similarity_invariances(pair):
    W_a, W_b = pair
    assert similarity_score(W_a, W_a) == pytest.approx(1.0)
    assert similarity_score(W_a, 3.0 * W_a[:, ::-1]) == pytest.approx(1.0)
    for permutation in itertools.islice(itertools.permutations(range(6)), 0, 720, 97):
        np.testing.assert_allclose(similarity_score(W_a[:, permutation], W_b), similarity_score(W_a, W_b),
                                   **tolerances.FLOAT64_REGROUPED)
    assert similarity_score(W_a, W_b) == pytest.approx(similarity_score(W_b, W_a))


def test_similarity_needs_the_same_examples(pair):
    W_a, W_b = pair
    with pytest.raises(IncompatibleStoresError, match="numbers of examples"):
        similarity_score(W_a, W_b[:40])


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
    result = split_map(fine, coarse, predictions=predictions)
    assert (result["coarse"], result["fine"]) == ("b", "a")
    assert result["splits"] == {0: [0, 2], 1: [1, 3]}
    assert result["coarse_matched_fraction"] == 1.0
    assert result["n_tuned_matches"] == 4 and result["tunings_preserved"] == 1.0
    # a fine split whose top examples mix predictions is not preserved
    predictions[30] = 1
    result = split_map(coarse, fine, predictions=predictions)
    assert result["tunings_preserved"] == pytest.approx(3 / 4)


@pytest.fixture
def store_and_decompositions(tmp_path):
    W, labels, predictions = known_tunings_case()
    store = small_store(tmp_path / "store", labels=labels, predictions=predictions)
    a = hand_made_decomposition(tmp_path / "a", store, W)
    b = hand_made_decomposition(tmp_path / "b", store, W[:, [3, 0, 4, 2, 1]])
    return store, a, b


def test_compare_decompositions(store_and_decompositions):
    _, a, b = store_and_decompositions
    result = compare(a, b)
    assert result["similarity"] == pytest.approx(1.0)
    assert result["split_map"]["tunings_preserved"] == 1.0
    assert compare(a, a)["similarity"] == pytest.approx(1.0)


def test_compare_refuses_decompositions_of_different_stores(store_and_decompositions, tmp_path):
    _, a, _ = store_and_decompositions
    W, labels, predictions = known_tunings_case()
    other_store = small_store(tmp_path / "other", labels=labels, predictions=predictions[::-1])
    c = hand_made_decomposition(tmp_path / "c", other_store, W)
    with pytest.raises(IncompatibleStoresError, match="different stores"):
        compare(a, c)


def test_compare_without_the_recorded_store(store_and_decompositions, tmp_path):
    """The recorded store is gone: the similarity still works, the tunings preserved do not."""
    _, a, b = store_and_decompositions
    shutil.rmtree(tmp_path / "store")
    result = compare(a, b)
    assert result["similarity"] == pytest.approx(1.0) and result["split_map"]["tunings_preserved"] is None
    with pytest.raises(StoreNotFoundError, match="pass --store"):
        tunings(a)
    with pytest.raises(StoreNotFoundError):
        compare(a, b, tmp_path / "store")  # a store given that is not there is an error
