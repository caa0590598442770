"""Rank-1 stores as rows ``[m, d]``, for methods that train on minibatches (the SAE, SED): endless
shuffled minibatches whose order does not depend on the memory budget, and one pass mapping every
row to a result row.

The minibatch order is defined on a fixed partition of the store into *order pieces*: the pieces a
fully streamed pass would read (whole inner chunks, at most :data:`~npeff.ops.stream.plan.STREAM_PIECE_BYTES`
each). Every epoch visits them in a seeded random order; the usable rows of each, with those the
previous one left over, are shuffled and cut into batches. Where an order piece's shard is resident
under the actual memory budget it is sliced out of the kept shard, else read from disk, so a run
with a small budget sees exactly the batches of a run with everything in memory.

Batches are gathered into two buffers used in turn (fresh ``[B, d]`` allocations cost more in page
faults than the gather itself): a batch stays valid until two more have been drawn.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch

from npeff.errors import InvalidArgumentError
from npeff.ops.stream.load import PieceLoader
from npeff.ops.stream.plan import Piece, plan_residency


class Minibatches:
    """Endless minibatches ``[B, d]`` of the usable rows of a rank-1 store. A batch is a reused
    buffer: it stays valid until two more batches have been drawn (copy it to keep it).

    Args:
        store: a finalized rank-1 store.
        batch_size: B (at most the number of usable rows).
        generator: the seeded generator of the piece order and of the shuffles (advanced as batches
            are drawn).
        mask: ``[m]`` booleans, the usable examples.
        memory_budget: bytes of the store kept resident (None: all of it).

    Notes:
        Memory: the resident shards, one order piece being read (streamed pieces only), two batch
        buffers ``[B, d]`` and fewer than ``B`` rows left over from the previous piece.
    """

    def __init__(self, store, batch_size: int, generator: torch.Generator, *, mask: np.ndarray, device: str,
                 dtype: torch.dtype, memory_budget: int | None):
        if not 1 <= batch_size <= int(mask.sum()):
            raise InvalidArgumentError(f"a batch takes 1 to {int(mask.sum())} examples (the usable ones of "
                                       f"{store.path}), not {batch_size}")
        self.store, self.batch_size, self.generator, self.mask = store, batch_size, generator, mask
        self.device, self.dtype = torch.device(device), dtype
        self.order = plan_residency(store, dtype=dtype, device=device, memory_budget=0).pieces
        plan = plan_residency(store, dtype=dtype, device=device, memory_budget=memory_budget)
        self.resident = {piece.shard: piece for piece in plan.pieces if piece.resident}
        self.load = PieceLoader(store, device=device, dtype=dtype)

    def rows(self, piece: Piece) -> torch.Tensor:
        """The usable rows ``[k, d]`` of one order piece (sliced from its shard when resident)."""
        shard = self.resident.get(piece.shard)
        if shard is not None:
            if shard.start not in self.load.kept:
                self.load(shard)  # read once and kept (on the device, or in host memory)
            kept = self.load.kept[shard.start]
            g = kept[piece.start - shard.start:piece.stop - shard.start].to(self.device, non_blocking=True)
        else:
            g = torch.from_numpy(self.store.read(piece.start, piece.stop)).to(self.device, self.dtype)
        usable = self.mask[piece.start:piece.stop]
        if usable.all():
            return g[:, 0, :]  # a view: the batch gather makes the one copy
        return g[:, 0, :].index_select(0, torch.from_numpy(np.flatnonzero(usable)).to(self.device))

    def __iter__(self) -> Iterator[torch.Tensor]:
        leftover = torch.zeros(0, self.store.dim, dtype=self.dtype, device=self.device)
        buffers = [torch.empty(self.batch_size, self.store.dim, dtype=self.dtype, device=self.device) for _ in range(2)]
        drawn = 0
        while True:
            for i in torch.randperm(len(self.order), generator=self.generator).tolist():
                rows = self.rows(self.order[i])
                if not len(rows):  # a piece without usable examples
                    continue
                # the pool is [leftover; rows] shuffled; each batch is gathered from it in one copy
                perm = torch.randperm(len(leftover) + len(rows), generator=self.generator).to(self.device)
                full = len(perm) // self.batch_size * self.batch_size
                for start in range(0, full, self.batch_size):
                    out = buffers[drawn % 2]
                    drawn += 1
                    yield _gather(leftover, rows, perm[start:start + self.batch_size], out)
                leftover = _gather(leftover, rows, perm[full:])


def _gather(first: torch.Tensor, second: torch.Tensor, index: torch.Tensor, out: torch.Tensor | None = None
            ) -> torch.Tensor:
    """Rows ``index`` of ``[first; second]`` (into ``out`` when given) without concatenating them: one
    gather from ``second``, then the (few) rows that come from ``first`` put in place."""
    out = torch.index_select(second, 0, (index - len(first)).clamp_(min=0), out=out)
    from_first = torch.nonzero(index < len(first)).flatten()
    if len(from_first):
        out[from_first] = first.index_select(0, index[from_first])
    return out


@torch.no_grad()
def map_rows(store, fn: Callable[[torch.Tensor], torch.Tensor], width: int, *, mask: np.ndarray, device: str,
             dtype: torch.dtype, memory_budget: int | None, out_dtype=np.float32) -> np.ndarray:
    """``[m, width]`` of ``out_dtype``: ``fn`` of the rows ``[k, d]`` of every piece, zero rows where
    ``mask`` is False; one pass over the store within ``memory_budget``."""
    plan = plan_residency(store, dtype=dtype, device=device, memory_budget=memory_budget)
    load = PieceLoader(store, device=device, dtype=dtype)
    out = np.zeros((store.num_examples, width), dtype=out_dtype)
    for piece in plan.pieces:
        result = fn(load(piece)[:, 0, :]).cpu().numpy().astype(out_dtype, copy=False)
        result[~mask[piece.start:piece.stop]] = 0
        out[piece.start:piece.stop] = result
    return out


__all__ = ["Minibatches", "map_rows"]
