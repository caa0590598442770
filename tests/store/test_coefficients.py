"""Fitted-coefficient directories: round trip, manifest checks, output directory rules."""

import numpy as np
import pytest

from npeff.errors import StoreCorruptError, StoreExistsError, StoreNotFoundError
from npeff.store._files import atomic_write_json
from npeff.store.coefficients import CoefficientsManifest, open_coefficients, write_coefficients

MANIFEST = CoefficientsManifest(decomposition="d", store="s", store_fingerprint="f", store_content_id=None,
                                steps=3, num_examples=4, n_components=2)


def test_round_trip(tmp_path):
    W = np.arange(8.0).reshape(4, 2)
    write_coefficients(tmp_path / "c", W, MANIFEST)
    read = open_coefficients(tmp_path / "c")
    np.testing.assert_array_equal(read.W, W)
    assert read.meta == MANIFEST and read.path == tmp_path / "c"


def test_existing_outputs(tmp_path):
    write_coefficients(tmp_path / "c", np.zeros((4, 2)), MANIFEST)
    with pytest.raises(StoreExistsError, match="already exists"):
        write_coefficients(tmp_path / "c", np.ones((4, 2)), MANIFEST)
    write_coefficients(tmp_path / "c", np.ones((4, 2)), MANIFEST, overwrite=True)
    assert open_coefficients(tmp_path / "c").W.all()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes").write_text("x")
    with pytest.raises(StoreExistsError, match="not an npeff coefficients directory"):
        write_coefficients(tmp_path / "other", np.ones((4, 2)), MANIFEST, overwrite=True)


@pytest.mark.parametrize("manifest, error, message", [
    (None, StoreNotFoundError, "does not exist"),
    ({"format": "npeff-decomposition", "format_version": 1}, StoreCorruptError, "not an npeff coefficients"),
    ({"format": "npeff-coefficients", "format_version": 1, "steps": 3}, StoreCorruptError, "incomplete"),
], ids=["missing", "other-format", "incomplete"])
def test_bad_manifests(tmp_path, manifest, error, message):
    (tmp_path / "c").mkdir()
    if manifest is not None:
        atomic_write_json(tmp_path / "c" / "manifest.json", manifest)
    with pytest.raises(error, match=message):
        open_coefficients(tmp_path / "c")
