"""A tiny algorithm over a store for the streaming tests: it knows nothing of NPEFF."""

import dataclasses

import numpy as np
import torch

from npeff.store import create_store


@dataclasses.dataclass
class Sums:
    """Partial sums of the test algorithm: the sum of all PEF entries and the number of examples."""

    total: torch.Tensor
    count: torch.Tensor

    def add_(self, other):
        self.total.add_(other.total)
        self.count.add_(other.count)
        return self

    def to(self, device):
        return Sums(self.total.to(device), self.count.to(device))


def sum_step(state, scale):
    """Adds ``scale`` times each example's PEF sum to its ``acc`` row, counts the passes in the
    piece's cache, and returns the piece's sums."""
    per_example = state.g.sum(dim=(1, 2))
    state.rows["acc"].add_(scale * per_example)
    state.cache["passes"] = state.cache.get("passes", 0) + 1
    return Sums(per_example.sum(), torch.tensor(float(len(per_example)), dtype=per_example.dtype))


def make_store(path, m=11, r=2, d=8, shard=3, seed=0):
    g = np.random.default_rng(seed).standard_normal((m, r, d)).astype(np.float32)
    writer = create_store(path, rank=r, dim=d, projection={"kind": "external"}, shard_examples=shard,
                          chunk_examples=1)
    writer.append(g)
    return writer.finalize(), g.astype(np.float64)
