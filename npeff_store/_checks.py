"""Validation helpers of the manifest's dataclasses: a failed check is an InvalidArgumentError."""

from __future__ import annotations

from typing import Any

from npeff.errors import InvalidArgumentError


def require(condition: bool, message: str) -> None:
    """Raise :class:`InvalidArgumentError` with ``message`` unless ``condition``."""
    if not condition:
        raise InvalidArgumentError(message)


def plain_int(value: Any, name: str, minimum: int = 0) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``, else an error naming ``name``."""
    require(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
            f"{name} must be an integer >= {minimum}, got {value!r}")
    return value
