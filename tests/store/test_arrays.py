"""``.npy`` arrays: atomic writes, reads without pickles, damage reported."""

import numpy as np
import pytest

from npeff.errors import CorruptError, StoreCorruptError
from npeff.store.arrays import load_array, save_array


def test_round_trip_is_contiguous_and_leaves_no_temporary_file(tmp_path):
    array = np.arange(12.0).reshape(3, 4).T  # not contiguous
    save_array(tmp_path / "a.npy", array)
    np.testing.assert_array_equal(load_array(tmp_path / "a.npy"), array)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


def test_a_failed_write_keeps_the_old_array(tmp_path):
    save_array(tmp_path / "a.npy", np.ones(3))
    with pytest.raises(ValueError):
        save_array(tmp_path / "a.npy", np.array([{"not": "numbers"}], dtype=object))  # pickles are refused
    np.testing.assert_array_equal(load_array(tmp_path / "a.npy"), np.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


@pytest.mark.parametrize("content, message", [(None, "is missing"), (b"garbage", "not a readable .npy")],
                         ids=["missing", "garbage"])
def test_damage_is_the_given_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / "a.npy").write_bytes(content)
    with pytest.raises(StoreCorruptError, match=message):
        load_array(tmp_path / "a.npy", corrupt=StoreCorruptError)
    with pytest.raises(CorruptError, match=message):
        load_array(tmp_path / "a.npy")
