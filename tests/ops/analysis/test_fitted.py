"""Coefficients fitted by npeff fit as the analyses take them: W from the coefficients, H, the loss
curve and the settings from the decomposition they were fitted with, the store of the fit."""

import json
import shutil

import numpy as np
import pytest

from npeff.errors import IncompatibleStoresError, StoreCorruptError, StoreNotFoundError
from npeff.ops import fit_coefficients
from npeff.ops.analysis import (FittedCoefficients, compare, compute_tunings, example_columns, open_analysable,
                                open_fitted, top_examples, tunings)
from npeff.store.coefficients import CoefficientsManifest, write_coefficients
from npeff.store import open_store
from npeff.store.decomposition import Decomposition
from tests.ops.analysis.helpers import hand_made_decomposition, known_tunings_case, small_store


@pytest.fixture
def case(tmp_path):
    """A decomposition of one store and coefficients written for a held-out store (same projection)."""
    W, labels, predictions = known_tunings_case()
    train = small_store(tmp_path / "train", labels=labels, predictions=predictions)
    decomposition = hand_made_decomposition(tmp_path / "decomposition", train, W)
    held_out = small_store(tmp_path / "held-out", labels=labels[::-1], predictions=predictions[::-1],
                           texts=[f"held-out sentence {i}" for i in range(len(labels))],
                           ids=[f"new-{i}" for i in range(len(labels))])
    W_new = W[::-1].copy()  # the held-out examples are the training ones reversed
    coefficients = _write(tmp_path / "coef", W_new, decomposition, held_out)
    return decomposition, held_out, coefficients, W_new


def _write(path, W, decomposition, store, **changes):
    fields = dict(decomposition=str(decomposition.path.resolve()), store=str(store.url),
                  store_fingerprint=store.fingerprint, store_content_id=store.content_id, steps=10,
                  num_examples=W.shape[0], n_components=W.shape[1], provenance={"command": "npeff fit ..."})
    fields.update(changes)
    return write_coefficients(path, np.asarray(W, np.float32), CoefficientsManifest(**fields))


def test_open_analysable_tells_coefficients_from_decompositions(case):
    decomposition, held_out, path, W_new = case
    fitted = open_analysable(path)
    assert isinstance(fitted, FittedCoefficients) and fitted.kind == "coefficients"
    np.testing.assert_array_equal(fitted.W, W_new.astype(np.float32))
    np.testing.assert_array_equal(fitted.H, decomposition.H)
    np.testing.assert_array_equal(fitted.losses, decomposition.losses)
    assert fitted.config == decomposition.config and fitted.method == "npeff"
    assert fitted.manifest["store"] == str(held_out.url)
    assert fitted.manifest["fit"]["decomposition"] == str(decomposition.path.resolve())
    assert isinstance(open_analysable(decomposition.path), Decomposition)
    assert open_analysable(fitted) is fitted


def test_tunings_and_top_examples_of_held_out_data(case):
    decomposition, held_out, path, W_new = case
    fitted = open_fitted(path)
    columns = example_columns(held_out)
    expected = compute_tunings(W_new, columns["label"], columns["prediction"])  # the naive route
    assert tunings(fitted) == expected  # the fit's store, read from the coefficients' manifest
    assert tunings(fitted).summary()["lnp_tuned_pct"] == pytest.approx(25.0)  # the case, reversed
    top = top_examples(fitted, k=2, components=[0])[0]
    assert [e["example_index"] for e in top["examples"]] == [63, 62]  # training examples 0, 1 reversed
    assert top["examples"][0]["text"] == "held-out sentence 63" and top["examples"][0]["source_id"] == "new-63"


def test_a_real_fit_is_analysed(case, tmp_path):
    decomposition, held_out, _, _ = case
    W = fit_coefficients(decomposition, held_out, out=tmp_path / "real", steps=3)
    fitted = open_fitted(tmp_path / "real")
    np.testing.assert_array_equal(fitted.W, W)
    assert fitted.decomposition.path.resolve() == decomposition.path.resolve()
    assert tunings(fitted).summary()["n_components"] == 5


def test_compare_coefficients_with_their_decomposition(case, tmp_path):
    decomposition, _, _, _ = case
    same = _write(tmp_path / "same", decomposition.W, decomposition, open_store(tmp_path / "train"))
    result = compare(decomposition, open_fitted(same))  # coefficients refitted on the training store
    assert result["similarity"] == pytest.approx(1.0) and result["examples_matched_by"] == "index"
    with pytest.raises(IncompatibleStoresError, match="64 of the 64 example ids"):
        compare(decomposition, open_fitted(tmp_path / "coef"))  # held-out examples are other examples


def test_the_recorded_decomposition_is_gone(case, tmp_path):
    decomposition, _, path, _ = case
    shutil.move(decomposition.path, tmp_path / "moved")
    with pytest.raises(StoreNotFoundError, match="that .* were fitted with cannot be opened"):
        open_fitted(path)
    assert open_fitted(path, decomposition=tmp_path / "moved").decomposition.path == tmp_path / "moved"


def test_refuses_a_decomposition_of_another_size(case, tmp_path):
    decomposition, held_out, _, W_new = case
    bad = _write(tmp_path / "bad", W_new[:, :3], decomposition, held_out)
    with pytest.raises(IncompatibleStoresError, match="coefficients for 3 components but the decomposition .* has 5"):
        open_fitted(bad)


def test_refuses_a_store_of_another_projection(case, tmp_path):
    decomposition, held_out, _, W_new = case
    bad = _write(tmp_path / "bad", W_new, decomposition, held_out, store_fingerprint="0" * 16)
    with pytest.raises(IncompatibleStoresError, match="fitted on a store of fingerprint 0000"):
        open_fitted(bad)


def test_refuses_a_w_that_is_not_the_manifests(case):
    _, _, path, _ = case
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["num_examples"] = 10
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreCorruptError, match=r"W.npy has shape \[64, 5\] but its manifest says \[10, 5\]"):
        open_fitted(path)


def test_refuses_the_decompositions_store_for_the_fits(case, tmp_path):
    _, _, path, _ = case
    with pytest.raises(IncompatibleStoresError, match="does not hold the examples the coefficients"):
        tunings(open_fitted(path), tmp_path / "train")
