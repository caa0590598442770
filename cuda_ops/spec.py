"""The seeded sparse sign projection, version ``ssp-v1``: its parameters and a pure-Python reference.

The projection maps ``R^n -> R^d``. For output coordinate ``j`` the input is split into regions of
``s = d / 32`` consecutive entries; region ``c`` holds entries ``[c*s, (c+1)*s)``. In each region
exactly one entry is chosen for output ``j``, at ``c*s + (((h >> 32) * s) >> 32)`` (the top 32 bits
of ``h`` mapped onto ``[0, s)`` by a multiply-shift), with sign ``-1`` when the lowest bit of ``h``
is set and ``+1`` otherwise, where::

    h = splitmix64(splitmix64(splitmix64(seed) XOR j) XOR c)          (64-bit wrap-around)

Every nonzero entry of the matrix is ``+-1/sqrt(d/s) = +-1/sqrt(32)``, so that ``E[A^T A] = I``:
each input entry feeds on average ``d/s = 32`` outputs. Entries of the last region past ``n`` are
skipped. Nothing depends on ``n``: the matrix is a pure function of (version, seed, d), and blocks
of the input projected separately (with their global offset) sum to the projection of the whole.

See ``docs/projection.md`` for the full specification and the paper's appendix A.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from npeff.errors import InvalidArgumentError

SPEC_KIND = "ssp-v1"
SPEC_VERSION = 1
#: Average number of outputs that each input entry contributes to (paper, appendix A).
DENSITY = 32

MASK64 = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15
MIX_C1 = 0xBF58476D1CE4E5B9
MIX_C2 = 0x94D049BB133111EB


def validate_dim(d: Any) -> int:
    """Return ``d`` as an int after checking it is a positive multiple of 32."""
    if isinstance(d, bool) or not isinstance(d, int) or d < DENSITY or d % DENSITY:
        raise InvalidArgumentError(
            f"projection dimension d must be a positive multiple of {DENSITY}, got {d!r}; "
            f"pick e.g. 1024 or 8192"
        )
    return d


def validate_seed(seed: Any) -> int:
    """Return ``seed`` as an int after checking it fits in an unsigned 64-bit integer."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MASK64:
        raise InvalidArgumentError(
            f"projection seed must be an integer in [0, 2**64), got {seed!r}"
        )
    return seed


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProjectionSpec:
    """A seeded sparse projection ``R^n -> R^d``; a pure function of (kind, seed, d).

    Attributes:
        seed: unsigned 64-bit seed of the counter-based hash.
        d: output dimension, a positive multiple of 32.
        kind: spec identifier; only ``"ssp-v1"`` exists.
    """

    seed: int
    d: int
    kind: str = SPEC_KIND

    def __post_init__(self) -> None:
        if self.kind != SPEC_KIND:
            raise InvalidArgumentError(
                f"unknown projection kind {self.kind!r}; this version of npeff knows {SPEC_KIND!r}"
            )
        validate_seed(self.seed)
        validate_dim(self.d)

    @property
    def version(self) -> int:
        return SPEC_VERSION

    @property
    def region_size(self) -> int:
        """Entries per region, ``s = d / 32``."""
        return self.d // DENSITY

    @property
    def scale(self) -> float:
        """Magnitude of every nonzero matrix entry, ``1 / sqrt(d / s)``."""
        return 1.0 / math.sqrt(self.d // self.region_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": self.version,
            "seed": self.seed,
            "d": self.d,
            "region_size": self.region_size,
            "scale": self.scale,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProjectionSpec":
        """Build a spec from :meth:`to_dict` output; derived fields are checked, not trusted."""
        if not isinstance(data, dict):
            raise InvalidArgumentError(f"projection spec must be a mapping, got {type(data).__name__}")
        unknown = set(data) - {"kind", "version", "seed", "d", "region_size", "scale"}
        if unknown:
            raise InvalidArgumentError(f"unknown projection spec fields: {sorted(unknown)}")
        if data.get("kind", SPEC_KIND) != SPEC_KIND:
            raise InvalidArgumentError(
                f"unknown projection kind {data.get('kind')!r}; this version of npeff knows {SPEC_KIND!r}"
            )
        missing = {"seed", "d"} - set(data)
        if missing:
            raise InvalidArgumentError(f"projection spec lacks {sorted(missing)}: got {data}")
        spec = cls(kind=data.get("kind", SPEC_KIND), seed=data["seed"], d=data["d"])
        for key in ("version", "region_size"):
            if key in data and data[key] != getattr(spec, key):
                raise InvalidArgumentError(
                    f"projection spec field {key}={data[key]!r} does not match "
                    f"{spec.kind} with d={spec.d} (expected {getattr(spec, key)!r})"
                )
        if "scale" in data and not math.isclose(data["scale"], spec.scale, rel_tol=1e-12):
            raise InvalidArgumentError(
                f"projection spec scale {data['scale']!r} does not match {spec.scale!r}"
            )
        return spec


# ----------------------------------------------------------------------------------------------
# Pure-Python reference: slow, exact, the definition the kernels are tested against.


def splitmix64(z: int) -> int:
    """One step of SplitMix64 (Steele, Lea and Flood 2014) on a 64-bit integer."""
    z = (z + GOLDEN_GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * MIX_C1) & MASK64
    z = ((z ^ (z >> 27)) * MIX_C2) & MASK64
    return z ^ (z >> 31)


def reference_hash(seed: int, j: int, c: int) -> int:
    """The 64-bit hash ``h(seed, j, c)`` of output ``j`` and region ``c``."""
    return splitmix64(splitmix64(splitmix64(seed) ^ j) ^ c)


def reference_choice(seed: int, d: int, j: int, c: int) -> tuple[int, int]:
    """Return ``(index, sign)`` chosen for output ``j`` in region ``c`` (index is global)."""
    s = d // DENSITY
    h = reference_hash(seed, j, c)
    return c * s + (((h >> 32) * s) >> 32), (-1 if h & 1 else 1)


def reference_matrix(spec: ProjectionSpec, n: int, offset: int = 0):
    """Dense float64 matrix ``A[d, n]`` of the columns ``[offset, offset + n)``.

    Memory is ``O(d * n)``: for tests and documentation only.
    """
    import numpy as np

    s = spec.region_size
    a = np.zeros((spec.d, n), dtype=np.float64)
    if n == 0:
        return a
    first, last = offset // s, (offset + n - 1) // s
    for j in range(spec.d):
        for c in range(first, last + 1):
            index, sign = reference_choice(spec.seed, spec.d, j, c)
            if offset <= index < offset + n:
                a[j, index - offset] = sign * spec.scale
    return a
