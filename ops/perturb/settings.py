"""The settings of a perturbation run (paper, section 3.2 and appendix E): a frozen, keyword-only
dataclass that validates itself and round-trips through a dict (it is recorded in the output and
compared on resume)."""

from __future__ import annotations

import dataclasses
import math

from npeff.errors import InvalidArgumentError

def _setting(default, help: str):
    return dataclasses.field(default=default, metadata={"help": help})


#: the default magnitude rule: the size that moves the baseline examples' predictions by this mean KL
DEFAULT_TARGET_KL = 0.01


@dataclasses.dataclass(frozen=True, kw_only=True)
class PerturbSettings:
    """How components are turned into perturbations and evaluated.

    Attributes:
        threshold: orthogonal rejection from the other components whose |cos| is below this (0.5).
        mu: the compressed-sensing weight μ of ``||u||_1 + ||Au - h||^2 / (2 μ)`` (4e-5), in the
            paper's units: for a unit-norm component and the paper's ``±1`` projection entries
            (see :mod:`~npeff.ops.perturb.compressed_sensing`).
        magnitude: absolute L2 norm of the change of the included parameters; or
        relative_magnitude: the same as a fraction of their norm ``||θ||``; or
        target_kl: the magnitude is searched, per component, until the mean KL of the baseline
            examples reaches this (nats). Exactly one of the three; the default is ``target_kl``
            of :data:`DEFAULT_TARGET_KL`.
        top: the component's top examples evaluated (16).
        baseline: random examples evaluated as the baseline (1000, seeded by ``seed``).
        seed: seed of the baseline draw (and of a component sample).
        batch_size: examples per forward pass.
    """

    threshold: float = _setting(0.5, "Reject the component from the others whose |cosine| with it is below this.")
    mu: float = _setting(4e-5, "Compressed-sensing weight mu of ||u||_1 + ||Au - h||^2 / (2 mu), in the paper's "
                                   "units (a unit-norm component, +-1 projection entries).")
    magnitude: float | None = _setting(None, "L2 norm of the parameter change (absolute).")
    relative_magnitude: float | None = _setting(None, "L2 norm of the change as a fraction of the norm of the "
                                                      "included parameters.")
    target_kl: float | None = _setting(None, f"Search the magnitude until the mean KL of the baseline examples is "
                                             f"this (nats; the default rule, {DEFAULT_TARGET_KL}).")
    top: int = _setting(16, "Top examples of each component evaluated.")
    baseline: int = _setting(1000, "Random examples evaluated as the baseline.")
    seed: int = _setting(0, "Seed of the baseline examples and of --sample.")
    batch_size: int = _setting(16, "Examples per forward pass.")

    def __post_init__(self) -> None:
        chosen = [name for name in ("magnitude", "relative_magnitude", "target_kl") if getattr(self, name) is not None]
        if len(chosen) > 1:
            raise InvalidArgumentError(f"give one of --magnitude, --relative-magnitude and --target-kl, got "
                                       f"{', '.join('--' + name.replace('_', '-') for name in chosen)}")
        if not chosen:
            object.__setattr__(self, "target_kl", DEFAULT_TARGET_KL)
        for name in ("magnitude", "relative_magnitude", "target_kl", "mu"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InvalidArgumentError(f"{name.replace('_', ' ')} must be a positive number, got {value!r}")
        if not 0 <= self.threshold <= 1:
            raise InvalidArgumentError(f"the rejection threshold is a |cosine| in [0, 1], got {self.threshold!r}")
        for name in ("top", "baseline", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name.replace('_', ' ')} must be an integer >= 1, got {value!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
