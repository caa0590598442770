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


@pytest.mark.parametrize("value, message", [(np.nan, "hold NaN or inf"), (np.inf, "hold NaN or inf")])
def test_non_finite_components_are_refused_before_fitting(tmp_path, decomposed, monkeypatch, value, message):
    from npeff.errors import DecompositionError
    from npeff.ops.stream import LocalRunner

    H = np.load(decomposed[0] / "H.npy")
    H[1, 3] = value
    save_array(decomposed[0] / "H.npy", H)
    monkeypatch.setattr(LocalRunner, "run_pass", lambda *a, **k: pytest.fail("fitted with a non-finite H"))
    with pytest.raises(DecompositionError, match=message) as raised:
        fit_coefficients(*decomposed, steps=2, out=tmp_path / "c")
    assert "first component 1" in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "c").exists()


def test_components_of_the_wrong_shape_are_refused(tmp_path, decomposed):
    save_array(decomposed[0] / "H.npy", np.ones(32))
    with pytest.raises(InvalidArgumentError, match=r"must be a float matrix \[C, d\], got float64 of shape \[32\]"):
        fit_coefficients(*decomposed)
    save_array(decomposed[0] / "H.npy", np.ones((3, 32)))
    with pytest.raises(InvalidArgumentError, match="are 3 rows, but its manifest says 2 components"):
        fit_coefficients(*decomposed)


def test_an_existing_output_is_refused_before_the_work(tmp_path, decomposed, monkeypatch):
    from npeff.ops.decomposition import normalization
    from npeff.ops.stream import LocalRunner

    fit_coefficients(*decomposed, steps=2, out=tmp_path / "c")
    monkeypatch.setattr(LocalRunner, "run_pass", lambda *a, **k: pytest.fail("fitted before checking --out"))
    monkeypatch.setattr(normalization, "pef_statistics", lambda *a, **k: pytest.fail("read the store first"))
    with pytest.raises(StoreExistsError, match="already exists"):
        fit_coefficients(*decomposed, steps=2, out=tmp_path / "c")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(StoreExistsError, match="not an npeff coefficients directory"):
        fit_coefficients(*decomposed, steps=2, out=tmp_path / "mine")


def test_non_finite_coefficients_are_an_error_and_never_written(tmp_path):
    from npeff.errors import DecompositionError

    g = random_pefs(m=6, seed=3)
    g[2] *= 1e25  # finite in float32 storage; its squares are not
    writer = create_store(tmp_path / "s", rank=3, dim=32, projection={"kind": "external"})
    writer.append(g.numpy().astype(np.float32))
    store = writer.finalize()
    decompose(store, 2, out=tmp_path / "d", warmup_steps=1, joint_steps=1)
    with pytest.raises(DecompositionError) as raised:
        fit_coefficients(tmp_path / "d", store, steps=3, normalize=False, out=tmp_path / "c")
    message = str(raised.value)
    assert message.startswith("fitting gave non-finite or negative coefficients for 1 of 6 examples (first: "
                              "example 2); nothing was written: the PEFs of ")
    assert "hold finite but huge values" in message and "\n" not in message
    assert not (tmp_path / "c").exists()
    fitted = fit_coefficients(tmp_path / "d", store, steps=3, out=tmp_path / "c")  # normalised as read: fine
    assert np.isfinite(fitted).all() and (fitted >= 0).all()
