"""The settings of a run given either as a config object or as its first field and keywords, as
the Python API of every trainer takes them (``decompose(store, 512, joint_steps=...)`` or
``decompose(store, config=...)``)."""

from __future__ import annotations

from typing import Any

from npeff.errors import InvalidArgumentError


def resolve_config(config_class: type, config: Any, first: str, value: Any, overrides: dict) -> Any:
    """``config`` as given, or ``config_class(first=value, **overrides)``; both at once is refused."""
    if config is None:
        return config_class(**{first: value}, **overrides)
    if value is not None or overrides:
        raise InvalidArgumentError(f"give either config or {first} and keywords, not both")
    return config
