"""Rank-1 stores as rows (ops/stream/rows.py): minibatch epochs cover every usable row once, in an
order that does not depend on the memory budget; the row map leaves unusable rows at zero."""

import itertools

import numpy as np
import pytest
import torch

from npeff.ops.stream.rows import Minibatches, map_rows
from npeff.store import create_store


def numbered_store(path, m=90, d=4, shard_examples=16):
    """Row ``i`` is ``[i, i, ...]``: a batch row says which example it is."""
    writer = create_store(path, rank=1, dim=d, projection={"kind": "external"}, kind="divergence",
                          shard_examples=shard_examples, chunk_examples=8)
    writer.append(np.repeat(np.arange(m, dtype=np.float32)[:, None, None], d, axis=2))
    return writer.finalize()


def draws(store, mask, batch_size, count, budget, seed=0):
    stream = iter(Minibatches(store, batch_size, torch.Generator().manual_seed(seed), mask=mask, device="cpu",
                              dtype=torch.float64, memory_budget=budget))
    return [batch[:, 0].long().tolist() for batch in itertools.islice(stream, count)]


def test_an_epoch_draws_every_usable_row_once(tmp_path):
    store = numbered_store(tmp_path / "s")
    mask = np.ones(90, dtype=bool)
    mask[::7] = False
    usable = int(mask.sum())
    rows = sum(draws(store, mask, 1, usable, None), [])
    assert sorted(rows) == np.flatnonzero(mask).tolist()  # each usable row once, none of the others
    assert rows != sorted(rows)  # shuffled


def test_the_order_does_not_depend_on_the_memory_budget(tmp_path):
    store = numbered_store(tmp_path / "s")
    mask = np.ones(90, dtype=bool)
    resident = draws(store, mask, 10, 30, None)
    for budget in (1, 2 * 16 * 4 * 8):  # nothing resident; two shards resident
        assert draws(store, mask, 10, 30, budget) == resident
    assert draws(store, mask, 10, 30, None, seed=1) != resident


def test_map_rows_zeroes_unusable_rows(tmp_path):
    store = numbered_store(tmp_path / "s")
    mask = np.arange(90) % 3 != 0
    out = map_rows(store, lambda g: g[:, :2] * 2, 2, mask=mask, device="cpu", dtype=torch.float32, memory_budget=1)
    expected = np.where(mask[:, None], 2 * np.arange(90)[:, None], 0).repeat(2, axis=1)
    np.testing.assert_array_equal(out, expected)


def test_batches_across_pieces_a_masked_shard_and_small_pieces(tmp_path, monkeypatch):
    from npeff.ops.stream import plan

    monkeypatch.setattr(plan, "STREAM_PIECE_BYTES", 8 * 4 * 8)  # one inner chunk (8 rows) per order piece
    store = numbered_store(tmp_path / "s", m=96, shard_examples=32)
    mask = np.ones(96, dtype=bool)
    mask[32:64] = False  # a whole shard without usable examples
    mask[5] = False
    usable = np.flatnonzero(mask).tolist()
    resident = draws(store, mask, 7, 9, None)  # 63 rows: the first epoch (63 usable) exactly
    assert sorted(sum(resident, [])) == usable and all(len(batch) == 7 for batch in resident)
    assert len({tuple(b) for b in resident}) == 9  # batches mix rows of several pieces
    for budget in (1, 32 * 4 * 8):  # nothing resident; one shard resident (pieces sliced from it)
        assert draws(store, mask, 7, 20, budget) == draws(store, mask, 7, 20, None)


def test_a_batch_larger_than_the_usable_examples_is_refused(tmp_path):
    from npeff.errors import InvalidArgumentError

    store = numbered_store(tmp_path / "s", m=20)
    mask = np.arange(20) < 5
    with pytest.raises(InvalidArgumentError, match="a batch takes 1 to 5 examples"):
        Minibatches(store, 6, torch.Generator(), mask=mask, device="cpu", dtype=torch.float32, memory_budget=None)
