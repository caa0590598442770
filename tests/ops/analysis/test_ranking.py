"""Top examples on hand-made coefficients and over a small store."""

import numpy as np
import pytest

from npeff.errors import InvalidArgumentError
from npeff.ops.analysis.ranking import top_examples, top_indices
from npeff.store import open_store
from tests.ops.analysis.helpers import hand_made_decomposition, known_tunings_case, small_store


def test_top_indices_order_ties_and_zeros():
    W = np.array([[0.5, 0.0], [0.9, 0.0], [0.5, 2.0], [0.0, 0.0], [0.9, 1.0]])
    top = top_indices(W, 5)
    assert top[0].tolist() == [1, 4, 0, 2]  # ties by index; the zero coefficient is never listed
    assert top[1].tolist() == [2, 4]
    assert top_indices(W, 2, [0])[0].tolist() == [1, 4]
    assert list(top_indices(W, 1, [1])) == [1]


@pytest.mark.parametrize("k, components, message", [
    (6, None, "larger than the number of examples"), (0, None, "positive integer"),
    (2, [2], "out of range"), (2, [-1], "out of range"),
])
def test_top_indices_bad_input(k, components, message):
    with pytest.raises(InvalidArgumentError, match=message):
        top_indices(np.ones((5, 2)), k, components)


@pytest.fixture
def decomposition(tmp_path):
    W, labels, predictions = known_tunings_case()
    store = small_store(tmp_path / "store", labels=labels, predictions=predictions)
    return hand_made_decomposition(tmp_path / "d", store, W)


def test_top_examples_read_the_store(decomposition):
    top = top_examples(decomposition, k=3, components=[1])
    assert [e["example_index"] for e in top[0]["examples"]] == [16, 17, 18]
    assert top[0]["examples"][0]["text"] == "example number 16"
    assert top[0]["examples"][0]["source_id"] == "id-16"
    assert (top[0]["examples"][0]["label"], top[0]["examples"][0]["prediction"]) == (0, 0)
    assert top[0]["examples"][0]["coefficient"] == pytest.approx(1.0)
    assert [e["rank"] for e in top[0]["examples"]] == [1, 2, 3]
    assert top[0]["n_nonzero"] == 16


def test_top_examples_refuse_k_over_the_examples(decomposition):
    with pytest.raises(InvalidArgumentError, match="larger than the number of examples"):
        top_examples(decomposition, k=65)


def test_top_indices_keep_to_the_effective_support():
    W = np.array([[1.0, 0.0], [1e-12, 2e-7], [0.3, 1.0], [2e-6, 0.0], [0.0, 5e-7]])
    assert top_indices(W, 5)[0].tolist() == [0, 2, 3]  # 1e-12 is below 1e-6 of the largest
    assert top_indices(W, 5)[1].tolist() == [2]
    assert top_indices(W, 5, support_threshold=0.0)[0].tolist() == [0, 2, 3, 1]
    assert top_indices(W, 5, support_threshold=0.0)[1].tolist() == [2, 4, 1]
    with pytest.raises(InvalidArgumentError, match="support threshold"):
        top_indices(W, 2, support_threshold=1.5)


def test_top_examples_count_both_supports(decomposition):
    W = decomposition.W.copy()
    W[60:64, 1] = 1e-9  # four tiny coefficients join component 1's 16
    store = open_store(decomposition.manifest["store"])
    tiny = hand_made_decomposition(decomposition.path.parent / "tiny", store, W)
    entry = top_examples(tiny, k=20, components=[1])[0]
    assert (entry["n_nonzero"], entry["n_effective"], entry["support_threshold"]) == (20, 16, 1e-6)
    assert len(entry["examples"]) == 16
    raw = top_examples(tiny, k=20, components=[1], support_threshold=0.0)[0]
    assert (raw["n_effective"], len(raw["examples"])) == (20, 20)

