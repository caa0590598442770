"""Artifacts written by npeff 0.1.0 (``tests/data/v0.1.0``, made by ``tests/data/make_v0_1_0.py``)
open with this version and give the same numbers."""

from pathlib import Path

import numpy as np
import pytest

from npeff.ops import decompose, fit_coefficients
from npeff.store import open_decomposition, open_store
from tests import tolerances

DATA = Path(__file__).parent / "data" / "v0.1.0"


@pytest.fixture(scope="module")
def expected():
    with np.load(DATA / "expected.npz") as arrays:
        return dict(arrays)


def test_store_reads_the_same(expected):
    store = open_store(DATA / "store")
    assert (store.num_examples, store.rank, store.dim) == expected["G"].shape
    np.testing.assert_array_equal(store.read(0, store.num_examples), expected["G"])
    assert store.examples.column("text").to_pylist()[:2] == ["example 0", "example 1"]
    assert store.status == "finalized"


def test_store_verifies():
    from npeff.store import verify_store

    report = verify_store(DATA / "store")
    assert report.problems == [], report.problems


def test_decomposition_opens_the_same(expected):
    decomposition = open_decomposition(DATA / "decomposition")
    np.testing.assert_array_equal(decomposition.W, expected["W"])
    np.testing.assert_array_equal(decomposition.H, expected["H"])
    np.testing.assert_array_equal(decomposition.losses, expected["losses"])
    assert decomposition.config["n_components"] == 3


def test_decomposing_again_gives_the_same_numbers(expected):
    decomposition = open_decomposition(DATA / "decomposition")
    assert decomposition.meta.normalization is None  # 0.1.0 decomposed a create_store store's PEFs as stored
    result = decompose(open_store(DATA / "store"), **{**decomposition.config, "normalize": False})
    np.testing.assert_allclose(result["W"], expected["W"], **tolerances.FLOAT64_REDUCED_ELSEWHERE)
    np.testing.assert_allclose(result["H"], expected["H"], **tolerances.FLOAT64_REDUCED_ELSEWHERE)
    np.testing.assert_allclose(result["losses"], expected["losses"], **tolerances.FLOAT64_REDUCED_ELSEWHERE)


def test_fitting_again_gives_the_same_coefficients(expected, tmp_path):
    coefficients = fit_coefficients(DATA / "decomposition", DATA / "store", steps=4, seed=2, dtype="float64",
                                    normalize=False)
    np.testing.assert_allclose(coefficients, expected["coefficients"], **tolerances.FLOAT64_REDUCED_ELSEWHERE)
    np.testing.assert_array_equal(np.load(DATA / "coefficients" / "W.npy"), expected["coefficients"])
