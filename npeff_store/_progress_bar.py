"""The progress shown while a command passes over a store's shards (verify, merge, export)."""

from __future__ import annotations

from typing import Iterable


def shard_progress(iterable: Iterable, *, total: int, desc: str, enabled: bool) -> Iterable:
    """``iterable`` counting shards with a transient progress bar, or periodic log lines without a
    terminal (see :func:`npeff.progress.progress_bar`); a plain pass-through when not ``enabled``."""
    from npeff.progress import progress_bar

    return progress_bar(iterable, total=total, desc=desc, unit="shard", enabled=enabled, leave=False)
