"""The settings of an NPEFF decomposition (paper, Algorithm 1 and appendix C): a frozen, keyword-only
dataclass that validates itself. Each field's help text lives in its metadata, read by the CLI."""

from __future__ import annotations

import dataclasses
from typing import Any

from npeff.errors import InvalidArgumentError

#: compute dtypes by name (torch's, looked up when used: the config loads no torch)
COMPUTE_DTYPES = ("float32", "float64")


def _setting(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecomposeConfig:
    """Hyperparameters of an NPEFF decomposition (the paper's defaults).

    Attributes:
        n_components: C, the number of components.
        warmup_steps: steps updating H only (W frozen), at ``warmup_lr``.
        joint_steps: steps updating W then H, at ``joint_lr``.
        seed: seed of the initialisation (W ~ U[0, 1], H ~ N(0, sqrt(2) / sqrt(C d))).
        dtype: compute dtype, ``float32`` or ``float64``.
        normalize: scale each PEF to ``||G_i^T G_i||_F = 1`` as it is read when the store does
            not record its PEFs as normalised (section 2.2; see
            :mod:`npeff.ops.decomposition.normalization`); False decomposes them as stored.
    """

    n_components: int = dataclasses.field(metadata={"help": "Number of components C."})
    warmup_steps: int = _setting(1000, "H-only steps (W frozen).")
    joint_steps: int = _setting(3000, "Steps updating W and H.")
    warmup_lr: float = _setting(1e-5, "Learning rate of warm-up steps.")
    joint_lr: float = _setting(3e-4, "Learning rate of joint steps.")
    seed: int = _setting(0, "Seed of the initialisation.")
    dtype: str = dataclasses.field(default="float32", metadata={"help": "Compute dtype.",
                                                                 "choices": COMPUTE_DTYPES})
    normalize: bool = _setting(True, "Scale each PEF to unit Frobenius norm when the store's are not "
                                     "normalised (a store from create_store); --no-normalize uses them as stored.")

    def __post_init__(self) -> None:
        if isinstance(self.n_components, bool) or not isinstance(self.n_components, int) or self.n_components < 1:
            raise InvalidArgumentError(f"the number of components must be an integer >= 1, got {self.n_components!r}")
        for name in ("warmup_steps", "joint_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(f"{name} must be an integer >= 0, got {value!r}")
        if self.warmup_steps + self.joint_steps < 1:
            raise InvalidArgumentError("a decomposition needs at least one step (--warmup-steps or --joint-steps)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2 ** 63:
            raise InvalidArgumentError(f"the seed must be an integer in [0, 2**63), got {self.seed!r}")
        for name in ("warmup_lr", "joint_lr"):
            if not float(getattr(self, name)) > 0:
                raise InvalidArgumentError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.dtype not in COMPUTE_DTYPES:
            raise InvalidArgumentError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if not isinstance(self.normalize, bool):
            raise InvalidArgumentError(f"normalize must be True or False, got {self.normalize!r}")

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.joint_steps

    @property
    def torch_dtype(self):
        """The compute dtype as a ``torch.dtype``."""
        import torch

        return getattr(torch, self.dtype)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DecomposeConfig:
        """The config of :meth:`to_dict`'s output (unknown keys are refused)."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidArgumentError(f"unknown decomposition settings {unknown}; known: {sorted(names)}")
        return cls(**data)
