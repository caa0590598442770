"""Settings of the baselines (frozen, keyword-only dataclasses that validate themselves; the CLI
builds its options from their fields' help). They load no torch, so ``npeff --help`` stays fast."""

from __future__ import annotations

import dataclasses

from npeff.errors import InvalidArgumentError
from npeff.ops.decomposition.sed.config import FLOAT32_MAX


def _setting(default, help: str):
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """Settings of a gradient clustering.

    Attributes:
        n_clusters: K.
        iterations: at most this many Lloyd iterations (each one pass over the store); it stops
            earlier when no label changes.
        seed: seed of the k-means++ sample and draws.
        sample: examples the k-means++ seeding draws from (default: 20 per cluster, at least 2048,
            at most all).
        dtype: compute dtype.
    """

    n_clusters: int = dataclasses.field(metadata={"help": "Number of clusters K."})
    iterations: int = _setting(100, "At most this many Lloyd iterations (one pass over the store each).")
    seed: int = _setting(0, "Seed of the k-means++ initialisation.")
    sample: int | None = _setting(None, "Examples the k-means++ initialisation draws from (default: 20 per "
                                        "cluster, at least 2048).")
    dtype: str = dataclasses.field(default="float32", metadata={"help": "Compute dtype.",
                                                                 "choices": ("float32", "float64")})

    def __post_init__(self) -> None:
        for name, minimum in (("n_clusters", 1), ("iterations", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InvalidArgumentError(f"{name.replace('_', ' ')} must be an integer >= {minimum}, got {value!r}")
        if self.sample is not None and (isinstance(self.sample, bool) or not isinstance(self.sample, int)
                                        or self.sample < self.n_clusters):
            raise InvalidArgumentError(f"the k-means++ sample must be an integer >= K = {self.n_clusters}, "
                                       f"got {self.sample!r}")
        if self.dtype not in ("float32", "float64"):
            raise InvalidArgumentError(f"dtype must be float32 or float64, got {self.dtype!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SaeConfig:
    """Settings of a TopK SAE (appendix G's defaults where it gives them).

    Attributes:
        n_latents: C, the dictionary size.
        k: active latents per example (32).
        lr: Adam's learning rate (1e-3).
        batch_size: activations per step (4096; at most the number of examples is used).
        steps: optimiser steps (the paper: 51,200 batches).
        seed: seed of the initialisation and of the batch order.
    """

    n_latents: int = dataclasses.field(metadata={"help": "Number of latents C."})
    k: int = _setting(32, "Active latents per example (TopK).")
    lr: float = _setting(1e-3, "Adam learning rate.")
    batch_size: int = _setting(4096, "Activations per step.")
    steps: int = _setting(5000, "Optimiser steps (the paper trains 51,200).")
    seed: int = _setting(0, "Seed of the initialisation and the batch order.")

    def __post_init__(self) -> None:
        for name, minimum in (("n_latents", 1), ("k", 1), ("batch_size", 1), ("steps", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InvalidArgumentError(f"{name.replace('_', ' ')} must be an integer >= {minimum}, got {value!r}")
        if self.k > self.n_latents:
            raise InvalidArgumentError(f"k = {self.k} active latents cannot exceed the {self.n_latents} latents")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < FLOAT32_MAX:
            raise InvalidArgumentError(f"the learning rate must be a positive number below {FLOAT32_MAX:.3g} "
                                       f"(float32's largest), got {self.lr!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


__all__ = ["ClusterConfig", "SaeConfig"]
