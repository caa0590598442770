"""Decomposition checkpoints: round trip, atomic replacement, damage reported."""

import numpy as np
import pytest

from npeff.errors import CorruptError
from npeff.store.checkpoint import Checkpoint, checkpoint_path, load_checkpoint, save_checkpoint


def checkpoint(step):
    rng = np.random.default_rng(step)
    return Checkpoint(W=rng.random((5, 2)), H=rng.standard_normal((2, 8)), step=step, losses=[3.0, 2.5][:step],
                      config={"n_components": 2, "joint_lr": 0.1}, fingerprint="f00", num_examples=5)


def test_round_trip_and_replacement(tmp_path):
    save_checkpoint(tmp_path, checkpoint(1))
    path = save_checkpoint(tmp_path, checkpoint(2))
    assert path == checkpoint_path(tmp_path) and path.parent.name == "checkpoint"
    loaded = load_checkpoint(tmp_path)
    expected = checkpoint(2)
    np.testing.assert_array_equal(loaded.W, expected.W)
    np.testing.assert_array_equal(loaded.H, expected.H)
    assert (loaded.step, loaded.losses, loaded.config, loaded.fingerprint, loaded.num_examples) == \
        (2, [3.0, 2.5], {"n_components": 2, "joint_lr": 0.1}, "f00", 5)
    assert [p.name for p in path.parent.iterdir()] == ["state.npz"]  # no temporary file left


@pytest.mark.parametrize("content", [b"", b"not a zip", None], ids=["empty", "garbage", "missing"])
def test_a_damaged_checkpoint_is_a_clear_error(tmp_path, content):
    path = checkpoint_path(tmp_path)
    path.parent.mkdir()
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CorruptError, match="cannot be read"):
        load_checkpoint(tmp_path)
