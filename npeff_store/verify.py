"""Checking a PEF store (``npeff verify``): manifest, tensor metadata, every shard's checksums,
the table parts' schema and rows; problems name the shard and the file at fault."""

from __future__ import annotations

import dataclasses
import os

import pyarrow as pa
import pyarrow.parquet as pq

from npeff.store import _files
from npeff.store._files import PARTIAL_SUFFIX
from npeff.store._layout import KNOWN_NAMES, PEFS, read_array, shard_data_key, shard_table_key
from npeff.store._progress_bar import shard_progress
from npeff.store.manifest import ShardRecord
from npeff.store.reader import PefStore, open_store
from npeff.store.schema import EXAMPLE_SCHEMA


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
    store = open_store(path)  # manifest problems raise StoreCorruptError here
    report = VerifyReport(str(store.path), len(store.shards), store.num_examples, store.status)
    if store.revision is not None:
        report.notes.append(f"revision {store.revision} ({store.url})")
    if store.status == "building":
        report.notes.append(f"the store is still being built: checking its {len(store.shards)} committed shards")
    report.problems.extend(_tensor_problems(store))
    for shard in shard_progress(store.shards, total=len(store.shards), desc="verify", enabled=progress):
        report.problems.extend(_shard_problems(store, shard))
    names = store.location.names()  # None: the scheme cannot list (HTTP)
    extra = [name for name in names or () if name not in KNOWN_NAMES and not name.endswith(PARTIAL_SUFFIX)]
    if extra:
        report.notes.append(f"files not part of the store: {', '.join(extra)}")
    return report


def _tensor_problems(store: PefStore) -> list[str]:
    """Whether the zarr metadata opens and agrees with the manifest (shape and dtype)."""
    try:
        array = read_array(store.location)
    except ValueError as error:
        return [f"tensor metadata {PEFS}/zarr.json cannot be opened: {error}"]
    problems = []
    if tuple(array.domain.shape[1:]) != (store.rank, store.dim):
        problems.append(f"tensor shape {list(array.domain.shape)} does not match r={store.rank}, d={store.dim}")
    if str(array.dtype.numpy_dtype) != store.config.dtype:
        problems.append(f"tensor dtype {array.dtype.numpy_dtype} differs from the manifest's {store.config.dtype}")
    if array.domain.shape[0] < store.num_examples:
        problems.append(f"tensor holds {array.domain.shape[0]} examples, the manifest {store.num_examples}")
    return problems


def _shard_problems(store: PefStore, shard: ShardRecord) -> list[str]:
    """One shard: its data file and table part exist and match their checksums; the table's schema
    is the declared one and its rows are the shard's examples, in order."""
    problems = []
    label = f"shard {shard.index} (examples {shard.start}-{shard.stop - 1})"
    data_key, table_key = shard_data_key(shard.index), shard_table_key(shard.index)
    digest = _checksum(store, data_key)
    if digest is None:
        problems.append(f"{label}: data file {data_key} is missing")
    elif digest != shard.data_checksum:
        problems.append(f"{label}: data file {data_key} fails its checksum")
    table_bytes = store.location.read(table_key)
    if table_bytes is None:
        problems.append(f"{label}: table part {table_key} is missing")
        return problems
    if _files.bytes_checksum(table_bytes) != shard.table_checksum:
        problems.append(f"{label}: table part {table_key} fails its checksum")
        return problems
    try:
        table = pq.read_table(pa.BufferReader(table_bytes))
    except Exception as error:  # pyarrow raises several types for damaged files
        problems.append(f"{label}: table part cannot be read: {error}")
        return problems
    if not table.schema.equals(EXAMPLE_SCHEMA, check_metadata=False):
        problems.append(f"{label}: table schema differs from the declared one")
    if table.num_rows != shard.num_examples:
        problems.append(f"{label}: table has {table.num_rows} rows for {shard.num_examples} examples")
    elif table.column("example_index").to_pylist() != list(range(shard.start, shard.stop)):
        problems.append(f"{label}: table example_index does not run {shard.start}..{shard.stop - 1}")
    return problems


def _checksum(store: PefStore, key: str) -> str | None:
    """The checksum of the file ``key`` of ``store``, read in ranged blocks (memory: one 16 MiB
    block, wherever the store is); None when the file is missing."""
    try:
        return _files.blocks_checksum(store.location.read_blocks(key))
    except FileNotFoundError:
        return None
