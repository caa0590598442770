"""The progress bar shown while a command passes over a store's shards (verify, merge, export)."""

from __future__ import annotations

from typing import Iterable


def shard_progress(iterable: Iterable, *, total: int, desc: str, enabled: bool) -> Iterable:
    """``iterable`` with a transient tqdm bar counting shards (a plain pass-through when not ``enabled``)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="shard", disable=not enabled, leave=False)
