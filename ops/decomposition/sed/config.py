"""Settings of a sparse eigendecomposition (frozen, keyword-only, validating itself; the CLI builds
its options from the fields' help). It loads no torch, so ``npeff --help`` stays fast."""

from __future__ import annotations

import dataclasses
import math

from npeff.errors import InvalidArgumentError


#: the largest float32: a larger learning rate cannot enter a float32 update
FLOAT32_MAX = 3.4028234663852886e38


def _setting(default, help: str, **metadata):
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


@dataclasses.dataclass(frozen=True, kw_only=True)
class SedConfig:
    """Settings of ``npeff sed``.

    Attributes:
        n_components: K, the number of directions (rows of U).
        l1: λ, the weight of the L1 penalty on the codes ``g Uᵀ``.
        steps: Adam steps, one minibatch each.
        batch_size: examples per step (at most the number of usable examples is used).
        lr: Adam's learning rate.
        seed: seed of the initialisation and of the minibatch order.
        rank: the draft's low-rank parameterisation: each direction is, per parameter tensor, a sum
            of ``rank`` outer products of one vector per axis (unprojected stores only; None: full
            directions).
        dtype: compute dtype.
    """

    n_components: int = dataclasses.field(metadata={"help": "Number of directions K (rows of U)."})
    l1: float = _setting(0.1, "Weight λ of the L1 penalty on the codes g Uᵀ.")
    steps: int = _setting(2000, "Adam steps (one minibatch each).")
    batch_size: int = _setting(256, "Examples per step.")
    lr: float = _setting(1e-2, "Adam learning rate.")
    seed: int = _setting(0, "Seed of the initialisation and the minibatch order.")
    rank: int | None = _setting(None, "Low-rank directions: per parameter tensor, a sum of this many outer "
                                      "products (stores built with --projection none only).")
    dtype: str = _setting("float32", "Compute dtype.", choices=("float32", "float64"))

    def __post_init__(self) -> None:
        for name, minimum in (("n_components", 1), ("steps", 1), ("batch_size", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InvalidArgumentError(f"{name.replace('_', ' ')} must be an integer >= {minimum}, got {value!r}")
        if self.rank is not None and (isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1):
            raise InvalidArgumentError(f"rank must be an integer >= 1, got {self.rank!r}")
        if isinstance(self.l1, bool) or not isinstance(self.l1, (int, float)) or not 0 <= self.l1 < math.inf:
            raise InvalidArgumentError(f"the L1 weight λ must be a finite number >= 0, got {self.l1!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < FLOAT32_MAX:
            raise InvalidArgumentError(f"the learning rate must be a positive number below {FLOAT32_MAX:.3g} "
                                       f"(float32's largest), got {self.lr!r}")
        if self.dtype not in ("float32", "float64"):
            raise InvalidArgumentError(f"dtype must be float32 or float64, got {self.dtype!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


__all__ = ["SedConfig"]
