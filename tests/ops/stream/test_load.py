"""PieceLoader: resident pieces read once and kept, streamed ones read every time, aligned memory."""

import numpy as np
import torch

from npeff.ops.stream import Piece, PieceLoader, aligned
from tests.ops.stream.helpers import make_store


def test_resident_pieces_are_read_once_and_streamed_ones_every_time(tmp_path, monkeypatch):
    store, g = make_store(tmp_path / "s")
    reads = []
    real_read = store.read
    monkeypatch.setattr(store, "read", lambda *a: reads.append(a) or real_read(*a))
    loader = PieceLoader(store, device="cpu", dtype=torch.float64)
    pieces = [Piece(0, 0, 3, "device"), Piece(1, 3, 6, "host"), Piece(2, 6, 9, "stream")]
    for _ in range(3):
        for piece in pieces:
            np.testing.assert_array_equal(loader(piece).numpy(), g[piece.start:piece.stop])
    assert reads.count((0, 3)) == 1 and reads.count((3, 6)) == 1 and reads.count((6, 9)) == 3


def test_kept_pieces_are_aligned(tmp_path):
    store, _ = make_store(tmp_path / "s")
    loader = PieceLoader(store, device="cpu", dtype=torch.float32)
    assert loader(Piece(0, 0, 3, "device")).data_ptr() % 64 == 0
    assert loader(Piece(1, 3, 6, "host")).data_ptr() % 64 == 0


def test_aligned_copies_only_misaligned_tensors():
    base = torch.zeros(64, dtype=torch.float32)
    start = (-base.data_ptr() // 4) % 16  # the first 64-byte boundary inside base
    on_boundary = base[start:start + 8]
    assert aligned(on_boundary).data_ptr() == on_boundary.data_ptr()
    off = base[start + 1:start + 9]
    moved = aligned(off)
    assert moved.data_ptr() % 64 == 0 and torch.equal(moved, off)
