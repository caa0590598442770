"""Reading PEF stores: :func:`open_store` and the :class:`PefStore` handle (checked reads of
``G[m, r, d]``, the example table, shard-by-shard iteration, a dask array), plus reading a store's
manifest and progress record.

A reader sees the shards committed when it opened the store (all of them once it is finalized);
any number of readers may run beside one writer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from npeff.errors import (
    InvalidArgumentError,
    NotFoundError,
    StoreCorruptError,
    StoreNotFoundError,
)
from npeff.store import _files
from npeff.store._layout import MANIFEST, PROGRESS, open_array, shard_data_path, shard_table_path
from npeff.store.manifest import ShardRecord, StoreConfig, StoreManifest, check_shard_sequence
from npeff.store.schema import EXAMPLE_SCHEMA


def read_manifest(root: Path) -> StoreManifest:
    """The manifest of the store at ``root``.

    Raises:
        StoreNotFoundError: ``root`` does not exist or holds no ``manifest.json``.
        StoreCorruptError: the manifest is not a JSON object or not a valid store manifest.
    """
    path = root / MANIFEST
    if not root.exists():
        raise StoreNotFoundError(f"no store at {root}: the path does not exist")
    if not path.is_file():
        raise StoreNotFoundError(f"{root} is not an npeff store: it has no {MANIFEST}")
    data = _files.read_json(path, what="store manifest", missing=StoreNotFoundError, corrupt=StoreCorruptError)
    try:
        return StoreManifest.from_dict(data)
    except InvalidArgumentError as error:
        raise StoreCorruptError(f"{path} is invalid: {error}") from None


def read_progress(root: Path) -> tuple[ShardRecord, ...]:
    """The shards a build in progress has committed (none before its first commit).

    Raises:
        StoreCorruptError: ``progress.json`` exists but is not a valid progress record.
    """
    path = root / PROGRESS
    try:
        data = _files.read_json(path, what="progress record", missing=NotFoundError, corrupt=StoreCorruptError)
    except NotFoundError:
        return ()
    try:
        return tuple(ShardRecord.from_dict(s) for s in data["shards"])
    except (KeyError, TypeError, InvalidArgumentError) as error:
        raise StoreCorruptError(f"{path} is unreadable: {error}") from None


@dataclass(frozen=True)
class StoreChunk:
    """One shard's worth of a store: examples ``[start, stop)`` as float32 ``data[k, r, d]``."""

    index: int
    start: int
    stop: int
    data: np.ndarray


class PefStore:
    """Read-only handle on a PEF store (finalized, or the committed part of one being built).

    Any number of readers may open a store concurrently, also while a writer appends: a reader
    sees the shards committed when it was opened. The handle pickles (it reopens on unpickling).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest.status == "building":
            shards = read_progress(self.path)
            total = check_shard_sequence(shards, manifest.config.shard_examples)
            manifest = manifest.replace(shards=shards, num_examples=total)
        self._manifest = manifest
        self._array = None
        self._examples: pa.Table | None = None

    # pickling: ship the path, reopen on the other side (TensorStore handles stay local)
    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __repr__(self) -> str:
        return (f"PefStore({str(self.path)!r}, m={self.num_examples}, r={self.rank}, d={self.dim}, "
                f"dtype={self.config.dtype}, status={self.status})")

    @property
    def config(self) -> StoreConfig:
        return self._manifest.config

    @property
    def manifest(self) -> dict:
        return self._manifest.to_dict()

    @property
    def status(self) -> str:
        return self._manifest.status

    @property
    def num_examples(self) -> int:
        return self._manifest.num_examples

    @property
    def rank(self) -> int:
        return self.config.rank

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def fingerprint(self) -> str:
        return self._manifest.fingerprint

    @property
    def shards(self) -> tuple[ShardRecord, ...]:
        return self._manifest.shards

    @property
    def content_id(self) -> str:
        """A digest of the committed shards' checksums: equal for stores holding the same bytes.

        Decompositions record it, so analysis can tell whether a store is the one decomposed.
        """
        text = "\n".join(f"{s.start}:{s.stop}:{s.data_checksum}:{s.table_checksum}" for s in self.shards)
        return _files.bytes_checksum(f"{self.fingerprint}\n{text}".encode())

    @property
    def array(self):
        if self._array is None:
            self._array = open_array(self.path)
        return self._array

    def _shard_of(self, example: int) -> int:
        return example // self.config.shard_examples

    def _check_files(self, first_shard: int, last_shard: int) -> None:
        for i in range(first_shard, last_shard + 1):
            if not shard_data_path(self.path, i).is_file():
                raise StoreCorruptError(
                    f"shard {i} of {self.path} is missing its data file "
                    f"{shard_data_path(self.path, i).relative_to(self.path)}; run `npeff verify`"
                )

    def _finish_read(self, future, start: int, stop: int) -> np.ndarray:
        try:
            data = future.result()
        except ValueError as error:
            shards = sorted({self._shard_of(start), self._shard_of(max(start, stop - 1))})
            raise StoreCorruptError(
                f"shard {shards[0] if len(shards) == 1 else shards} of {self.path} failed its "
                f"checksum while reading examples [{start}, {stop}): {error}"
            ) from None
        return data if data.dtype == np.float32 else data.astype(np.float32)

    def _submit_read(self, start: int, stop: int):
        self._check_files(self._shard_of(start), self._shard_of(stop - 1))
        return self.array[start:stop].read()

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Examples ``[start, stop)`` as float32 ``[k, r, d]`` (checked against the crc32c codecs).

        Memory: the ``k * r * d`` result (plus the float16 buffer for float16 stores).
        """
        stop = self.num_examples if stop is None else stop
        for name, value in (("start", start), ("stop", stop)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
        if not 0 <= start <= stop <= self.num_examples:
            raise InvalidArgumentError(
                f"cannot read examples [{start}, {stop}) of a store holding {self.num_examples}"
            )
        if start == stop:
            return np.zeros((0, self.rank, self.dim), dtype=np.float32)
        return self._finish_read(self._submit_read(int(start), int(stop)), start, stop)

    def iter_chunks(self) -> Iterator[StoreChunk]:
        """Yield the store shard by shard, reading the next shard while the caller works."""
        pending = None
        for position, shard in enumerate(self.shards):
            if pending is None:
                pending = self._submit_read(shard.start, shard.stop)
            data = self._finish_read(pending, shard.start, shard.stop)
            pending = None
            if position + 1 < len(self.shards):
                following = self.shards[position + 1]
                pending = self._submit_read(following.start, following.stop)
            yield StoreChunk(shard.index, shard.start, shard.stop, data)

    @property
    def examples(self) -> pa.Table:
        """The per-example table (declared schema :data:`EXAMPLE_SCHEMA`), one row per example."""
        if self._examples is None:
            parts = []
            for shard in self.shards:
                path = shard_table_path(self.path, shard.index)
                if not path.is_file():
                    raise StoreCorruptError(f"shard {shard.index} of {self.path} lacks its table part {path.name}")
                parts.append(pq.read_table(path, schema=EXAMPLE_SCHEMA))
            self._examples = (pa.concat_tables(parts) if parts
                              else EXAMPLE_SCHEMA.empty_table())
        return self._examples

    def to_dask(self):
        """The tensor as a dask array ``[m, r, d]`` float32, one block per shard."""
        import dask.array as da

        sizes = tuple(s.num_examples for s in self.shards)
        if not sizes:
            return da.zeros((0, self.rank, self.dim), dtype=np.float32, chunks=((0,), self.rank, self.dim))
        return da.from_array(
            _DaskSource(self),
            chunks=(sizes, (self.rank,), (self.dim,)),
            name=f"npeff-store-{self.fingerprint}-{_files.bytes_checksum(str(self.path.resolve()).encode())[:12]}",
            asarray=False,
            fancy=False,
            meta=np.empty((0, 0, 0), dtype=np.float32),
        )


class _DaskSource:
    """The minimal array protocol dask needs (dtype, shape, ndim, __getitem__) over a store.

    ``dask.array.from_array`` cannot take a TensorStore handle directly (its dtype is not numpy's).
    """

    def __init__(self, store: PefStore):
        self.store = store
        self.shape = (store.num_examples, store.rank, store.dim)
        self.ndim = 3
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        first = key[0] if key else slice(None)
        start, stop, step = first.indices(self.shape[0]) if isinstance(first, slice) else (first, first + 1, 1)
        data = self.store.read(start, max(start, stop))[::step]
        rest = key[1:]
        data = data[(slice(None),) + tuple(rest)] if rest else data
        return data if isinstance(first, slice) else data[0]


def open_store(path: str | os.PathLike) -> PefStore:
    """Open a PEF store read-only. Never executes code from the store (JSON, Parquet, zarr only)."""
    return PefStore(path)
