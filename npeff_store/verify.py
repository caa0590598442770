"""Checking a PEF store (``npeff verify``): manifest, tensor metadata (its checksum and its agreement
with the manifest), every shard's checksums, the table parts' schema and rows (the checks readers
make, :mod:`npeff.store.integrity`, all of them at once); problems name the shard and the file at
fault."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from npeff.store import _files
from npeff.store._files import PARTIAL_SUFFIX
from npeff.store._layout import KNOWN_NAMES, shard_data_key
from npeff.store._progress_bar import shard_progress
from npeff.store.integrity import read_table_part, tensor_problems
from npeff.store.manifest import ShardRecord
from npeff.store.reader import PefStore, open_for_inspection


@dataclasses.dataclass
class VerifyReport:
    """Outcome of :func:`verify_store`: ``problems`` is empty when the store is sound."""

    path: str
    num_shards: int
    num_examples: int
    status: str
    problems: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_store(path: str | os.PathLike, *, progress: bool = False) -> VerifyReport:
    """Check a store's manifest, tensor metadata, every shard's checksum, table schema and rows.

    Problems name the shard (and file) at fault. Reads every byte of the store once, one file at
    a time (memory: one table part).

    Raises:
        StoreNotFoundError, StoreCorruptError: there is no store, or its manifest is unreadable.
    """
    store = open_for_inspection(path)  # manifest problems raise StoreCorruptError here
    report = VerifyReport(str(store.path), len(store.shards), store.num_examples, store.status)
    if store.revision is not None:
        report.notes.append(f"revision {store.revision} ({store.url})")
    if store.status == "building":
        report.notes.append(f"the store is still being built: checking its {len(store.shards)} committed shards")
    report.problems.extend(tensor_problems(store.location, store.store_manifest))
    recorded = {shard.data_checksum: shard.index for shard in store.shards}
    for shard in shard_progress(store.shards, total=len(store.shards), desc="verify", enabled=progress):
        report.problems.extend(_shard_problems(store, shard, recorded))
    names = store.location.names()  # None: the scheme cannot list (HTTP)
    extra = [name for name in names or () if name not in KNOWN_NAMES and not name.endswith(PARTIAL_SUFFIX)]
    if extra:
        report.notes.append(f"files not part of the store: {', '.join(extra)}")
    links = _links_out_of(store.location.local) if store.location.local is not None else []
    if links:
        report.notes.append(f"symbolic links to files outside the store (their contents were checked, but a copy "
                            f"or upload that follows links carries those files): {', '.join(links[:5])}"
                            + (f" and {len(links) - 5} more" if len(links) > 5 else ""))
    return report


def _links_out_of(root: Path) -> list[str]:
    """The paths below ``root`` (relative to it) that are symbolic links resolving outside it."""
    root = root.resolve()
    found = []
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(directory, name)
            if path.is_symlink() and root not in path.resolve().parents:
                found.append(str(path.relative_to(root)))
    return sorted(found)


def _shard_problems(store: PefStore, shard: ShardRecord, recorded: dict[str, int]) -> list[str]:
    """One shard: its data file and table part exist and match their checksums; the table's schema
    is the declared one and its rows are the shard's examples, in order. ``recorded`` maps every
    shard's recorded data checksum to its index, to name the shard whose data a file holds."""
    problems = []
    label = f"shard {shard.index} (examples {shard.start}-{shard.stop - 1})"
    data_key = shard_data_key(shard.index)
    digest = _checksum(store, data_key)
    if digest is None:
        problems.append(f"{label}: data file {data_key} is missing")
    elif digest != shard.data_checksum:
        other = recorded.get(digest)
        problems.append(f"{label}: data file {data_key} fails its checksum" + (
            "" if other is None else f": it holds the data of shard {other} (shards moved or swapped)"))
    _table, problem = read_table_part(store.location, shard)
    if problem is not None:
        problems.append(f"{label}: {problem}")
    return problems


def _checksum(store: PefStore, key: str) -> str | None:
    """The checksum of the file ``key`` of ``store``, read in ranged blocks (memory: one 16 MiB
    block, wherever the store is); None when the file is missing."""
    try:
        return _files.blocks_checksum(store.location.read_blocks(key))
    except FileNotFoundError:
        return None
