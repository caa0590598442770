"""fit_coefficients(): W for known components, and what it refuses."""

import numpy as np
import pytest

from npeff.errors import IncompatibleStoresError, InvalidArgumentError, StoreExistsError
from npeff.ops import decompose, fit_coefficients
from npeff.store import create_store
from npeff.store.arrays import save_array
from npeff.store.coefficients import open_coefficients
from tests.ops.decomposition.helpers import make_store, planted, random_pefs


def test_fit_recovers_coefficients_for_known_h(tmp_path):
    g, w_true, h_true = planted(m=40, seed=7)
    store = make_store(tmp_path / "s", g, shard=16)
    decompose(store, 4, out=tmp_path / "d", warmup_steps=1, joint_steps=1, dtype="float64")
    save_array(tmp_path / "d" / "H.npy", h_true.numpy())  # pretend the decomposition found the truth
    coefficients = fit_coefficients(tmp_path / "d", store, steps=300, dtype="float64", out=tmp_path / "c",
                                    memory_budget=1)
    # 300 multiplicative steps from a random start: close to, not at, the exact coefficients
    np.testing.assert_allclose(coefficients, w_true.numpy(), atol=2e-3)
    written = open_coefficients(tmp_path / "c")
    np.testing.assert_array_equal(written.W, coefficients)
    assert written.meta.store_fingerprint == store.fingerprint and written.meta.steps == 300


def test_existing_coefficients_are_not_replaced_unasked(tmp_path):
    store = make_store(tmp_path / "s", random_pefs(m=4), shard=4)
    decompose(store, 2, out=tmp_path / "d", warmup_steps=1, joint_steps=1)
    first = fit_coefficients(tmp_path / "d", store, steps=2, out=tmp_path / "c")
    with pytest.raises(StoreExistsError, match="already exists"):
        fit_coefficients(tmp_path / "d", store, steps=3, seed=1, out=tmp_path / "c")
    np.testing.assert_array_equal(open_coefficients(tmp_path / "c").W, first)
    fit_coefficients(tmp_path / "d", store, steps=3, seed=1, out=tmp_path / "c", overwrite=True)
    assert open_coefficients(tmp_path / "c").meta.steps == 3


@pytest.fixture
def decomposed(tmp_path):
    store = make_store(tmp_path / "s", random_pefs(m=4), shard=4)
    decompose(store, 2, out=tmp_path / "d", warmup_steps=1, joint_steps=1)
    return tmp_path / "d", store


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "steps must be an integer >= 1"),
    (dict(dtype="float16"), "dtype must be one of float32, float64"),
    (dict(device="meta"), "not supported"),
    (dict(memory_budget="plenty"), "memory budget must look like"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_bad_arguments(decomposed, kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        fit_coefficients(*decomposed, **kwargs)


def test_a_store_of_another_projection_is_refused(tmp_path, decomposed):
    other = create_store(tmp_path / "o", rank=3, dim=32, projection={"kind": "ssp-v1", "seed": 1},
                         shard_examples=4, chunk_examples=1)
    other.append(random_pefs(m=4).numpy().astype(np.float32))
    with pytest.raises(IncompatibleStoresError, match="does not share the projection"):
        fit_coefficients(decomposed[0], other.finalize())
