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


def _permuted_store(tmp_path, name, order, *, ids=None, predictions_of=None):
    """A store of the known case's examples in the order ``order`` (row j holds example order[j]),
    with their ids unless ``ids`` are given, and the predictions ``predictions_of`` when given."""
    _, labels, predictions = known_tunings_case()
    predictions = predictions if predictions_of is None else predictions_of
    return small_store(tmp_path / name, labels=[labels[i] for i in order],
                       predictions=[predictions[i] for i in order],
                       ids=[f"id-{i}" for i in order] if ids is None else ids)


def naive_id_matched_similarity(store_a, W_a, store_b, W_b):
    """Rows of B looked up one by one by id in A's order, then the section 4 score."""
    ids_b = store_b.examples.column("source_id").to_pylist()
    rows = [ids_b.index(i) for i in store_a.examples.column("source_id").to_pylist()]
    return naive_similarity(np.asarray(W_a, np.float64), np.stack([np.asarray(W_b[j], np.float64) for j in rows]))


def test_compare_matches_the_examples_of_different_stores_by_id(store_and_decompositions, tmp_path):
    """Figure 2's case: the same examples in another store (here in another order), matched by id."""
    store, a, _ = store_and_decompositions
    W, _, _ = known_tunings_case()
    order = np.random.default_rng(3).permutation(len(W))
    other = _permuted_store(tmp_path, "other", order)
    c = hand_made_decomposition(tmp_path / "c", other, W[order])
    result = compare(a, c)
    assert result["examples_matched_by"] == "example id" and result["n_examples"] == 64
    assert result["similarity"] == pytest.approx(1.0) and result["split_map"]["tunings_preserved"] == 1.0
    assert result["store_b"] == str(other.path)
    noisy = hand_made_decomposition(tmp_path / "noisy", other,
                                    np.abs(W[order] + np.random.default_rng(4).random(W.shape) * 0.3))
    np.testing.assert_allclose(compare(a, noisy)["similarity"],
                               naive_id_matched_similarity(store, a.W, other, noisy.W), **tolerances.FLOAT64_REGROUPED)
    assert compare(a, noisy)["similarity"] < 0.99
    assert compare(a, a)["examples_matched_by"] == "index"  # one store: rows as they are


def test_compare_of_different_stores_uses_each_stores_predictions(store_and_decompositions, tmp_path):
    _, a, _ = store_and_decompositions
    W, _, predictions = known_tunings_case()
    flipped = [1 - p for p in predictions]  # B's model predicts the other class everywhere
    other = _permuted_store(tmp_path, "other", list(range(len(W))), predictions_of=flipped)
    c = hand_made_decomposition(tmp_path / "c", other, W)
    result = compare(a, c)
    assert result["similarity"] == pytest.approx(1.0)
    assert result["split_map"]["tunings_preserved"] == 0.0  # tuned to the other prediction on B's side


@pytest.mark.parametrize("ids, message", [
    (lambda ids: ids[:-2] + ["x-1", "x-2"], "2 of the 64 example ids of .* are not in .*, and 2 of its 64"),
    (lambda ids: ids[:-1] + [ids[0]], "1 example ids that appear more than once"),
    (lambda ids: ids[:-3] + [None] * 3, "3 of 64 examples without an id"),
], ids=["different", "repeated", "missing"])
def test_compare_refuses_stores_whose_ids_differ(store_and_decompositions, tmp_path, ids, message):
    _, a, _ = store_and_decompositions
    W, _, _ = known_tunings_case()
    other = _permuted_store(tmp_path, "other", range(len(W)), ids=ids([f"id-{i}" for i in range(len(W))]))
    c = hand_made_decomposition(tmp_path / "c", other, W)
    with pytest.raises(IncompatibleStoresError, match=message):
        compare(a, c)


def test_compare_refuses_stores_of_different_sizes(store_and_decompositions, tmp_path):
    _, a, _ = store_and_decompositions
    W, _, _ = known_tunings_case()
    other = _permuted_store(tmp_path, "other", range(60))
    c = hand_made_decomposition(tmp_path / "c", other, W[:60])
    with pytest.raises(IncompatibleStoresError, match="4 of the 64 example ids of .* and 0 of its 60"):
        compare(a, c)


def test_compare_of_different_stores_needs_both(store_and_decompositions, tmp_path):
    _, a, _ = store_and_decompositions
    W, _, _ = known_tunings_case()
    order = np.arange(len(W))[::-1]
    other = _permuted_store(tmp_path, "other", order)
    c = hand_made_decomposition(tmp_path / "c", other, W[order])
    shutil.copytree(tmp_path / "other", tmp_path / "moved")
    shutil.rmtree(tmp_path / "other")
    with pytest.raises(StoreNotFoundError, match="pass --store-b"):
        compare(a, c)
    assert compare(a, c, store_b=tmp_path / "moved")["similarity"] == pytest.approx(1.0)


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
