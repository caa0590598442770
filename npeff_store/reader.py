"""Reading PEF stores: :func:`open_store` and the :class:`PefStore` handle (checked reads of
``G[m, r, d]``, the example table, shard-by-shard iteration, a dask array), plus reading a store's
manifest and progress record.

A reader sees the shards committed when it opened the store (all of them once it is finalized);
any number of readers may run beside one writer. What it serves is checked against the manifest
(:mod:`npeff.store.integrity`): the tensor metadata on opening, each shard's file on its first
read in the process, each table part when the table is read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from npeff.errors import InvalidArgumentError, NpeffError, StoreCorruptError, StoreNotFoundError
from npeff.store import _files
from npeff.store._layout import MANIFEST, PEFS, PROGRESS, shard_data_key
from npeff.store.integrity import (
    UNREACHABLE,
    check_shard_data,
    metadata_checksum_problem,
    open_tensor,
    read_table_part,
)
from npeff.store.location import StoreLocation, StoreUnreachableError, is_url, parse_location
from npeff.store.manifest import ShardRecord, StoreConfig, StoreManifest, check_shard_sequence
from npeff.store.schema import EXAMPLE_SCHEMA


def read_manifest(location: StoreLocation | str | os.PathLike) -> StoreManifest:
    """The manifest of the store at ``location`` (a path, a URL or a :class:`StoreLocation`).

    Raises:
        StoreNotFoundError: nothing is there, or it holds no ``manifest.json``.
        StoreCorruptError: the manifest is not a JSON object or not a valid store manifest.
    """
    location = location if isinstance(location, StoreLocation) else parse_location(location)
    if location.local is not None and not location.local.exists():
        raise StoreNotFoundError(f"no store at {location.local}: the path does not exist")
    data = location.read(MANIFEST)
    if data is None:
        where = location.local if location.local is not None else location.url
        raise StoreNotFoundError(f"{where} is not an npeff store: it has no {MANIFEST}")
    parsed = _files.parse_json(data, where=location.describe(MANIFEST), corrupt=StoreCorruptError)
    try:
        return StoreManifest.from_dict(parsed)
    except InvalidArgumentError as error:
        raise StoreCorruptError(f"{location.describe(MANIFEST)} is invalid: {error}") from None


def read_progress(location: StoreLocation | str | os.PathLike) -> tuple[ShardRecord, ...]:
    """The shards a build in progress has committed (none before its first commit).

    Raises:
        StoreCorruptError: ``progress.json`` exists but is not a valid progress record.
    """
    location = location if isinstance(location, StoreLocation) else parse_location(location)
    data = location.read(PROGRESS)
    if data is None:
        return ()
    where = location.describe(PROGRESS)
    parsed = _files.parse_json(data, where=where, corrupt=StoreCorruptError)
    try:
        return tuple(ShardRecord.from_dict(s) for s in parsed["shards"])
    except (KeyError, TypeError, InvalidArgumentError) as error:
        raise StoreCorruptError(f"{where} is unreadable: {error}") from None


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
    sees the shards committed when it was opened. The handle pickles (it reopens on unpickling,
    from :attr:`url`, so the workers of a cluster read a remote store directly).

    Args:
        path: a local path, a URL or a :class:`StoreLocation`.
        check_shards: hash each shard's file on its first read in this process and refuse one that
            is not the file the manifest records (:func:`~npeff.store.integrity.check_shard_data`);
            False leaves only TensorStore's crc32c per inner chunk, which a shard moved, swapped or
            replaced by another valid one passes (for a store just verified by other means).

    Attributes:
        location: where the store is (:mod:`npeff.store.location`).
        path: the local directory as given, or the URL of a remote store (for messages).

    Raises:
        StoreCorruptError: the manifest is unreadable, or the tensor metadata fails the checksum
            the manifest records for it.
    """

    def __init__(self, path: str | os.PathLike | StoreLocation, *, check_shards: bool = True):
        self._open(path, check_shards)
        problem = metadata_checksum_problem(self.location, self._manifest)
        if problem is not None:
            raise StoreCorruptError(f"{self.path}: {problem}; run `npeff verify`")

    def _open(self, path: str | os.PathLike | StoreLocation, check_shards: bool) -> None:
        """Read the manifest (and the progress record of a store being built)."""
        self._check_shards = bool(check_shards)
        self.location = path if isinstance(path, StoreLocation) else parse_location(path)
        self.path: Path | str = (Path(path) if not isinstance(path, StoreLocation) and not is_url(path)
                                 else self.location.url)
        manifest = read_manifest(self.location)
        if manifest.status == "building":
            shards = read_progress(self.location)
            total = check_shard_sequence(shards, manifest.config.shard_examples)
            manifest = manifest.replace(shards=shards, num_examples=total)
        self._manifest = manifest
        self._array = None
        self._examples: pa.Table | None = None

    # pickling: ship the location, reopen on the other side (TensorStore handles stay local)
    def __getstate__(self) -> dict:
        return {"url": self.url, "check_shards": self._check_shards}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["url"], check_shards=state.get("check_shards", True))

    def __repr__(self) -> str:
        return (f"PefStore({self.url!r}, m={self.num_examples}, r={self.rank}, d={self.dim}, "
                f"dtype={self.config.dtype}, status={self.status})")

    @property
    def url(self) -> str:
        """Where the store is, to record and to reopen it from anywhere: an absolute local path or a
        URL (a Hub URL pinned to its commit)."""
        return self.location.url

    @property
    def revision(self) -> str | None:
        """The commit a Hub store resolved to (None for other locations)."""
        return self.location.revision

    @property
    def config(self) -> StoreConfig:
        return self._manifest.config

    @property
    def manifest(self) -> dict:
        return self._manifest.to_dict()

    @property
    def store_manifest(self) -> StoreManifest:
        """The manifest as its dataclass (:attr:`manifest` is its JSON form)."""
        return self._manifest

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
        """The identity of the examples the store serves: a digest of its fingerprint (projection
        and parameter layout) and, per committed shard, its range and the xxh3-128 checksums of its
        data file and table part. Equal for stores holding the same bytes.

        Every checksum in it is checked before the store serves what it covers: a shard's data on
        its first read in the process (unless opened with ``check_shards=False``), a table part
        whenever the table is read, and the tensor metadata, which decides how the shards' bytes
        are read, on opening (its recorded checksum) and when the tensor is opened (against the
        manifest's layout). The tensor metadata's own checksum is not part of the digest: what it
        may say is fixed by the manifest, and leaving it out keeps the ids stores had before it was
        recorded (``npeff upgrade`` adds the record without changing them). Computing the id reads
        no file; decompositions record it, so analysis can tell whether a store is the one decomposed.
        """
        text = "\n".join(f"{s.start}:{s.stop}:{s.data_checksum}:{s.table_checksum}" for s in self.shards)
        return _files.bytes_checksum(f"{self.fingerprint}\n{text}".encode())

    @property
    def array(self):
        """The TensorStore handle on ``G[m, r, d]`` (opened on first use)."""
        if self._array is None:
            array, problem = open_tensor(self.location, self._manifest)
            if problem is not None:
                raise StoreCorruptError(f"{self.path}: {problem}; run `npeff verify`")
            self._array = array
        return self._array

    def _shard_of(self, example: int) -> int:
        return example // self.config.shard_examples

    def _finish_read(self, future, start: int, stop: int) -> np.ndarray:
        """Check the shards of ``[start, stop)`` (while TensorStore reads them), then wait for it."""
        if self._check_shards:
            for index in range(self._shard_of(start), self._shard_of(stop - 1) + 1):
                check_shard_data(self.location, self.shards[index], where=str(self.path))
        try:
            data = future.result()
        except ValueError as error:
            shards = sorted({self._shard_of(start), self._shard_of(max(start, stop - 1))})
            which = shards[0] if len(shards) == 1 else shards
            if str(error).startswith("NOT_FOUND"):
                named = _SHARD_KEY.search(str(error))  # TensorStore names the missing shard's file
                missing = (f"shard {named.group(1)} of {self.path} is missing its data file "
                           f"{shard_data_key(int(named.group(1)))}" if named
                           else f"a data file of shards {which} of {self.path} is missing")
                raise StoreCorruptError(f"{missing}; run `npeff verify`") from None
            if str(error).startswith(UNREACHABLE):
                raise _read_error(error, f"cannot read examples [{start}, {stop}) of {self.path}") from None
            raise StoreCorruptError(
                f"shard {which} of {self.path} failed its checksum while reading examples [{start}, {stop}): {error}"
            ) from None
        return data if data.dtype == np.float32 else data.astype(np.float32)

    def _submit_read(self, start: int, stop: int):
        return self.array[start:stop].read()

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Examples ``[start, stop)`` as float32 ``[k, r, d]``, checked: each shard they lie in against
        its recorded checksum on its first read in this process (the whole shard file is hashed
        then, however few of its examples are read), each inner chunk against its crc32c.

        Memory: the ``k * r * d`` result (plus the float16 buffer for float16 stores).

        Raises:
            StoreCorruptError: a shard is missing, fails its checksum or does not decode.
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
        """The per-example table (declared schema :data:`EXAMPLE_SCHEMA`), one row per example.

        Each part is checked (:func:`~npeff.store.integrity.read_table_part`): its recorded checksum,
        its schema, one row per example of its shard, ``example_index`` equal to the row's position
        and a valid ``status`` on every row.

        Raises:
            StoreCorruptError: a part is missing or fails a check (the message names it).
        """
        if self._examples is None:
            parts = []
            for shard in self.shards:
                table, problem = read_table_part(self.location, shard)
                if problem is not None:
                    raise StoreCorruptError(f"shard {shard.index} of {self.path}: {problem}; run `npeff verify`")
                parts.append(table)
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
            name=f"npeff-store-{self.fingerprint}-{_files.bytes_checksum(self.url.encode())[:12]}",
            asarray=False,
            fancy=False,
            meta=np.empty((0, 0, 0), dtype=np.float32),
        )


    def to_xarray(self):
        """The store as an ``xarray.Dataset`` (``pefs[example, row, feature]`` read lazily, the table's
        per-example columns beside it); see :func:`npeff.store.xarray_view.store_dataset`."""
        from npeff.store.xarray_view import store_dataset

        return store_dataset(self)


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


#: a shard's file in TensorStore's messages
_SHARD_KEY = re.compile(PEFS + r"/c/(\d+)/0/0")


def _read_error(error: ValueError, what: str) -> NpeffError:
    """TensorStore's error as npeff's: a store that cannot be reached, or one that is damaged."""
    text = str(error).splitlines()[0]
    if text.startswith(UNREACHABLE):
        return StoreUnreachableError(f"{what}: {text}")
    return StoreCorruptError(f"{what}: {text}")


def open_store(path: str | os.PathLike, *, check_shards: bool = True) -> PefStore:
    """Open a PEF store read-only, from a local path or a URL (``file://``, ``http(s)://``, ``s3://``,
    ``gs://``, ``hf://datasets/ORG/NAME[@REVISION][/SUBDIR]``; see :mod:`npeff.store.location`).

    Never executes code from the store (JSON, Parquet, zarr only). ``check_shards``: see
    :class:`PefStore` (on by default; off only for a store verified by other means).

    Raises:
        StoreNotFoundError: no store there (:class:`~npeff.store.location.StoreUnreachableError`
            when the location cannot be reached).
        StoreCorruptError: its manifest is unreadable, or its tensor metadata fails its checksum.
    """
    return PefStore(path, check_shards=check_shards)


def open_for_inspection(path: str | os.PathLike) -> PefStore:
    """The store at ``path`` opened without refusing tensor metadata that fails its checksum, for
    ``verify``, which reports it (its reads still check the metadata against the manifest's layout).

    Raises:
        StoreNotFoundError, StoreCorruptError: no store, or an unreadable manifest.
    """
    store = PefStore.__new__(PefStore)
    store._open(path, check_shards=True)
    return store
