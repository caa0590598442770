"""Which parameters a store's PEF rows cover: names, shapes and offsets in the flat vector."""

from __future__ import annotations

import dataclasses
import math

from npeff.store._checks import require as _require


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParameterLayout:
    """Which parameters the PEF rows cover: names, shapes and global offsets in the flat vector.

    Attributes:
        names: parameter names, in the order of the flat vector.
        shapes: each parameter's shape.
        offsets: each parameter's first index in the flat vector (contiguous, increasing).
        n_total: length of the flat vector (sum of the sizes).
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    n_total: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "shapes", tuple(tuple(int(s) for s in shape) for shape in self.shapes))
        object.__setattr__(self, "offsets", tuple(self.offsets))
        count = len(self.names)
        _require(
            len(self.shapes) == count and len(self.offsets) == count,
            f"parameter layout needs one shape and one offset per name: {count} names, "
            f"{len(self.shapes)} shapes, {len(self.offsets)} offsets",
        )
        _require(len(set(self.names)) == count, "parameter layout has duplicate names")
        position = 0
        for name, shape, offset in zip(self.names, self.shapes, self.offsets):
            _require(
                offset == position,
                f"parameter {name!r} starts at {offset}, expected {position} (contiguous layout)",
            )
            position += math.prod(shape)
        _require(
            self.n_total == position,
            f"parameter layout n_total={self.n_total} but the shapes add up to {position}",
        )

    @classmethod
    def from_shapes(cls, named_shapes: list[tuple[str, tuple[int, ...]]]) -> "ParameterLayout":
        offsets, position = [], 0
        for _name, shape in named_shapes:
            offsets.append(position)
            position += math.prod(shape)
        return cls(
            names=tuple(n for n, _ in named_shapes),
            shapes=tuple(tuple(s) for _, s in named_shapes),
            offsets=tuple(offsets),
            n_total=position,
        )

    def to_dict(self) -> dict:
        return {
            "names": list(self.names),
            "shapes": [list(s) for s in self.shapes],
            "offsets": list(self.offsets),
            "n_total": self.n_total,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ParameterLayout":
        _require(isinstance(data, dict), f"parameter layout must be a mapping, got {data!r}")
        missing = {"names", "shapes", "offsets", "n_total"} - set(data)
        _require(not missing, f"parameter layout lacks {sorted(missing)}")
        return cls(names=data["names"], shapes=data["shapes"], offsets=data["offsets"],
                   n_total=data["n_total"])
