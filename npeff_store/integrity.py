"""What a reader serves is what was written, where it was written: the checks a :class:`PefStore`
makes against its manifest as it reads, shared with ``npeff verify``, ``info`` and ``merge``.

TensorStore's crc32c checks each inner chunk of a shard, but a crc32c does not depend on where the
chunk sits: a shard file moved, swapped with another or replaced by another valid shard passes it.
So, besides it:

- **shard data**: on the first read of a shard in this process, its file is hashed (xxh3-128, in
  blocks of 16 MiB: ranged reads for a remote store) and compared with the manifest's record. A shard
  that passed is remembered by store location, shard index and recorded checksum, and for a local
  file by its identity (device, inode, size, modification time), so later reads, other handles on
  the same store and every pass of a decomposition skip the hash, while a file put in its place
  later is hashed again.
- **tensor metadata** (``pefs/zarr.json``): on opening, against the checksum the finalized manifest
  records (stores finalized before it was recorded have none); when the tensor is opened, against
  the layout the manifest implies (:func:`~npeff.store._layout.tensor_layout`: dtype, shard and
  chunk shapes, chunk keys, fill value, crc32c codecs) and its shape.
- **table parts**: the recorded checksum, then a readable Parquet file with the declared schema,
  one row per example of the shard, ``example_index`` equal to each row's position and a valid
  ``status`` on every row.

Problems are returned as one-line strings naming the file (``verify`` lists them, ``info`` notes
them); readers raise them as :class:`~npeff.errors.StoreCorruptError`.
"""

from __future__ import annotations

import os
import re
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from npeff.errors import StoreCorruptError
from npeff.store import _files
from npeff.store._layout import TENSOR_METADATA, read_array, shard_data_key, shard_table_key
from npeff.store.location import StoreLocation, StoreUnreachableError
from npeff.store.manifest import ShardRecord, StoreManifest
from npeff.store.schema import EXAMPLE_SCHEMA, STATUSES

#: shards whose file matched its recorded checksum in this process (see :func:`check_shard_data`)
_VERIFIED: set[tuple] = set()
_LOCKS: dict[tuple, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
#: TensorStore's status codes for a location that cannot be read (as opposed to damaged data)
UNREACHABLE = ("ABORTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "PERMISSION_DENIED", "UNAUTHENTICATED")
#: TensorStore's message for metadata that differs from the constraints it was opened with
_MISMATCH = re.compile(r'(?:Expected|Mismatch in) ("[a-z_]+")')


def check_shard_data(location: StoreLocation, shard: ShardRecord, *, where: str) -> None:
    """Refuse shard ``shard`` of the store at ``location`` unless its data file holds the bytes the
    manifest records for it; hashes the file on the first call in this process only (thread-safe:
    concurrent first reads of one shard hash it once).

    Memory: one 16 MiB block. Time: one read of the shard file (then served from the page cache to
    the read that follows, for a local store).

    Raises:
        StoreCorruptError: the file is missing, or it is not the one recorded (damaged, moved,
            swapped or replaced by another shard); ``where`` names the store.
        StoreUnreachableError: a remote read failed.
    """
    key = _shard_identity(location, shard, where)
    if key in _VERIFIED:
        return
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    try:
        with lock:
            _check_once(location, shard, key, where)
    finally:
        with _LOCKS_GUARD:
            _LOCKS.pop(key, None)


def _check_once(location: StoreLocation, shard: ShardRecord, key: tuple, where: str) -> None:
    """The hash of :func:`check_shard_data`, with the shard's lock held (another thread may have
    checked it meanwhile)."""
    if key in _VERIFIED:
        return
    name = shard_data_key(shard.index)
    try:  # a local file is read directly, a remote one in ranged reads of 16 MiB
        digest = (_files.file_checksum(location.local / name) if location.local is not None
                  else _files.blocks_checksum(location.read_blocks(name)))
    except FileNotFoundError:
        raise _missing_data(shard, where) from None
    if digest != shard.data_checksum:
        raise StoreCorruptError(
            f"shard {shard.index} of {where} (examples {shard.start}-{shard.stop - 1}) failed its checksum: "
            f"its data file {name} is not the one the manifest records (damaged, moved, or swapped with or "
            f"replaced by another shard); run `npeff verify`")
    _VERIFIED.add(key)


def forget_checked_shards() -> None:
    """Forget which shards this process has checked, so that each is hashed again on its next read
    (for benchmarks timing a first read)."""
    _VERIFIED.clear()


def _shard_identity(location: StoreLocation, shard: ShardRecord, where: str) -> tuple:
    """What a verified shard is remembered by: location, index and recorded checksum, plus the
    file's identity for a local store (a file moved in later is another file)."""
    key = (location.url, shard.index, shard.data_checksum)
    if location.local is None:
        return key
    try:
        status = os.stat(location.local / shard_data_key(shard.index))
    except FileNotFoundError:
        raise _missing_data(shard, where) from None
    return key + (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _missing_data(shard: ShardRecord, where: str) -> StoreCorruptError:
    return StoreCorruptError(f"shard {shard.index} of {where} is missing its data file "
                             f"{shard_data_key(shard.index)}; run `npeff verify`")


def metadata_checksum_problem(location: StoreLocation, manifest: StoreManifest) -> str | None:
    """Whether ``pefs/zarr.json`` is missing or differs from the checksum the manifest records (None:
    it matches, or the manifest records none). One small read, none without a record."""
    recorded = manifest.tensor_metadata_checksum
    if recorded is None:
        return None
    data = location.read(TENSOR_METADATA)
    if data is None:
        return f"tensor metadata {TENSOR_METADATA} is missing"
    if _files.bytes_checksum(data) != recorded:
        return (f"tensor metadata {TENSOR_METADATA} fails its checksum (edited or replaced since the store "
                f"was finalized)")
    return None


def open_tensor(location: StoreLocation, manifest: StoreManifest):
    """``(array, problem)``: the TensorStore handle on the tensor, checked against the manifest's
    layout and shape, or ``(None, problem)`` when the metadata is missing, unreadable or not the
    manifest's.

    Raises:
        StoreUnreachableError: the location cannot be read.
    """
    try:
        array = read_array(location, manifest.config)
    except ValueError as error:
        text = first_line(error)
        if text.startswith(UNREACHABLE):
            raise StoreUnreachableError(f"cannot open the tensor of {location.url}: {text}") from None
        if text.startswith("NOT_FOUND"):
            return None, f"tensor metadata {TENSOR_METADATA} is missing"
        detail = text.split(' driver: ', 1)[-1]
        field = _MISMATCH.match(detail)
        if text.startswith("FAILED_PRECONDITION") and field is not None:
            if len(detail) > 240:  # nested codec constraints: their innermost reason says enough
                detail = f"{field.group(1)} differ: {detail.rsplit(': ', 1)[-1]}"
            return None, f"tensor metadata {TENSOR_METADATA} does not match the manifest: {detail}"
        return None, f"tensor metadata {TENSOR_METADATA} cannot be opened: {detail}"
    config, shape = manifest.config, tuple(array.domain.shape)
    held = shape[0] == manifest.num_examples if manifest.status == "finalized" else shape[0] >= manifest.num_examples
    if shape[1:] != (config.rank, config.dim) or not held:
        return None, (f"tensor metadata {TENSOR_METADATA} says shape {list(shape)}, the manifest "
                      f"[{manifest.num_examples}, {config.rank}, {config.dim}]")
    return array, None


def tensor_problems(location: StoreLocation, manifest: StoreManifest) -> list[str]:
    """The tensor metadata's problems (at most one: the specific mismatch is named before a failed
    checksum, which it explains)."""
    _array, problem = open_tensor(location, manifest)
    problem = problem or metadata_checksum_problem(location, manifest)
    return [] if problem is None else [problem]


def read_table_part(location: StoreLocation, shard: ShardRecord) -> tuple[pa.Table | None, str | None]:
    """``(table, None)``: the checked table rows of ``shard``; ``(None, problem)`` otherwise (missing,
    failed checksum, unreadable, or rows that contradict the manifest: see :func:`table_problem`).

    Memory: the part's bytes and its table.

    Raises:
        StoreUnreachableError: a remote read failed.
    """
    key = shard_table_key(shard.index)
    data = location.read(key)
    if data is None:
        return None, f"table part {key} is missing"
    if _files.bytes_checksum(data) != shard.table_checksum:
        return None, f"table part {key} fails its checksum"
    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as error:  # pyarrow raises several types for damaged files
        return None, f"table part {key} cannot be read: {first_line(error)}"
    problem = table_problem(table, shard)
    if problem is not None:
        return None, f"table part {key} {problem}"
    return table.replace_schema_metadata(EXAMPLE_SCHEMA.metadata), None


def table_problem(table: pa.Table, shard: ShardRecord) -> str | None:
    """Whether the rows of a table part contradict the manifest: a schema other than the declared
    one (a missing ``status`` column above all), another number of rows than the shard's examples,
    an ``example_index`` that is not each row's position, or a status that is not one of
    :data:`~npeff.store.schema.STATUSES`."""
    missing = [name for name in EXAMPLE_SCHEMA.names if name not in table.schema.names]
    if missing:
        return f"lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    if not table.schema.equals(EXAMPLE_SCHEMA, check_metadata=False):
        differing = [f"{f.name}: {f.type}{'' if f.nullable else ' not null'}" for f in table.schema
                     if f.name not in EXAMPLE_SCHEMA.names or not f.equals(EXAMPLE_SCHEMA.field(f.name))]
        return f"has a schema other than the declared one ({', '.join(differing) or 'column order'})"
    if table.num_rows != shard.num_examples:
        return f"holds {table.num_rows} rows for the {shard.num_examples} examples of shard {shard.index}"
    index = table.column("example_index").to_numpy(zero_copy_only=False)
    expected = np.arange(shard.start, shard.stop)
    if not np.array_equal(index, expected):
        row = int(np.flatnonzero(index != expected)[0])
        return (f"has example_index {int(index[row])} in row {row}, where example {shard.start + row} belongs "
                f"(rows reordered or from elsewhere)")
    status = table.column("status")
    valid = pc.is_in(status, value_set=pa.array(STATUSES))
    if status.null_count or not pc.all(valid).as_py():
        bad = sorted({str(v) for v in pc.filter(status, pc.invert(pc.fill_null(valid, False))).to_pylist()})
        return f"holds statuses that are not {', '.join(STATUSES)}: {', '.join(bad[:3])}"
    return None


def first_line(error: BaseException) -> str:
    """The first line of an error's message, without the TensorStore spec it appends."""
    text = str(error).strip()
    text = text.splitlines()[0] if text else type(error).__name__
    return text.split(" [tensorstore_spec=", 1)[0].split(" [source locations=", 1)[0]
