"""PEF stores: a directory with ``manifest.json``, the tensor ``G[m, r, d]`` as a sharded zarr v3
array written by TensorStore, and the per-example table as one Parquet file per shard.

Layout::

    STORE/manifest.json               what the store is (written atomically; status building|finalized)
    STORE/progress.json               committed shards while building (the commit point of a shard)
    STORE/pefs/zarr.json              zarr v3 metadata; shards of ``shard_examples`` examples
    STORE/pefs/c/<i>/0/0              shard i: inner chunks with crc32c, shard index with crc32c
    STORE/examples/part-<i>.parquet   table rows of shard i (declared schema)

A shard is committed by (1) writing its data file, (2) writing its table part, (3) rewriting
``progress.json`` with the shard's checksums. Each step replaces whole files atomically, so after
a kill a shard is either committed or absent; resuming deletes whatever an uncommitted shard left.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from npeff.errors import (
    InvalidArgumentError,
    StoreCorruptError,
    StoreExistsError,
    StoreNotFoundError,
)
from npeff.store import _files
from npeff.store.manifest import (
    ModelIdentity,
    ParameterLayout,
    ShardRecord,
    StoreConfig,
    StoreManifest,
    check_shard_sequence,
    new_provenance,
    now_iso,
)
from npeff.store.schema import EXAMPLE_SCHEMA, example_rows, finish_row, rows_to_table

MANIFEST = "manifest.json"
PROGRESS = "progress.json"
PEFS = "pefs"
EXAMPLES = "examples"
TARGET_SHARD_BYTES = 128 << 20
TARGET_CHUNK_BYTES = 4 << 20
_PART_RE = re.compile(r"part-(\d+)\.parquet$")


def shard_data_path(root: Path, index: int) -> Path:
    return root / PEFS / "c" / str(index) / "0" / "0"


def shard_table_path(root: Path, index: int) -> Path:
    return root / EXAMPLES / f"part-{index:06d}.parquet"


def default_layout(rank: int, dim: int, dtype: str) -> tuple[int, int]:
    """``(shard_examples, chunk_examples)`` for ~128 MiB shards of ~4 MiB inner chunks."""
    per_example = rank * dim * (4 if dtype == "float32" else 2)
    chunk = max(1, TARGET_CHUNK_BYTES // per_example)
    shard = max(1, TARGET_SHARD_BYTES // (per_example * chunk)) * chunk
    return shard, chunk


def _tensorstore_spec(root: Path, config: StoreConfig | None = None) -> dict:
    spec: dict[str, Any] = {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(root / PEFS)},
        # files are written to a temporary name and renamed (atomic against a killed process);
        # no fsync per shard: durability after a power loss is checked with `npeff verify`
        "context": {"file_io_sync": False},
    }
    if config is not None:
        # every committed shard must exist as a file, also when its examples are all zeros
        spec["store_data_equal_to_fill_value"] = True
        little = {"name": "bytes", "configuration": {"endian": "little"}}
        spec["metadata"] = {
            "shape": [0, config.rank, config.dim],
            "data_type": config.dtype,
            "chunk_grid": {"name": "regular",
                           "configuration": {"chunk_shape": [config.shard_examples, config.rank, config.dim]}},
            "chunk_key_encoding": {"name": "default"},
            "fill_value": 0,
            "codecs": [{
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": [config.chunk_examples, config.rank, config.dim],
                    "codecs": [little, {"name": "crc32c"}],
                    "index_codecs": [little, {"name": "crc32c"}],
                    "index_location": "end",
                },
            }],
            "attributes": {"npeff": "PEF tensor G[m, r, d]; see ../manifest.json"},
        }
    return spec


def _open_array(root: Path, *, config: StoreConfig | None = None, write: bool = False):
    """Open the tensor read-only, or (with ``config``) for writing, creating it when missing."""
    import tensorstore as ts

    if config is None:
        return ts.open(_tensorstore_spec(root), open=True, read=True, write=write).result()
    if (root / PEFS / "zarr.json").is_file():
        spec = dict(_tensorstore_spec(root), store_data_equal_to_fill_value=True)
        array = ts.open(spec, open=True, read=True, write=True).result()
        expected = (config.rank, config.dim)
        if tuple(array.domain.shape[1:]) != expected or str(array.dtype.numpy_dtype) != config.dtype:
            raise StoreCorruptError(
                f"{root / PEFS} holds a [{', '.join(map(str, array.domain.shape))}] "
                f"{array.dtype.numpy_dtype} array, the manifest says [m, {config.rank}, {config.dim}] {config.dtype}"
            )
        return array
    return ts.open(_tensorstore_spec(root, config), create=True, read=True, write=True).result()


def _read_manifest(root: Path) -> StoreManifest:
    import json

    path = root / MANIFEST
    if not root.exists():
        raise StoreNotFoundError(f"no store at {root}: the path does not exist")
    if not path.is_file():
        raise StoreNotFoundError(f"{root} is not an npeff store: it has no {MANIFEST}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise StoreCorruptError(f"{path} is not valid JSON: {error}") from None
    try:
        return StoreManifest.from_dict(data)
    except InvalidArgumentError as error:
        raise StoreCorruptError(f"{path} is invalid: {error}") from None


def _read_progress(root: Path) -> tuple[ShardRecord, ...]:
    import json

    path = root / PROGRESS
    if not path.exists():
        return ()
    try:
        data = json.loads(path.read_text())
        return tuple(ShardRecord.from_dict(s) for s in data["shards"])
    except (json.JSONDecodeError, KeyError, TypeError, InvalidArgumentError) as error:
        raise StoreCorruptError(f"{path} is unreadable: {error}") from None


def _as_numpy(g: Any) -> np.ndarray:
    if type(g).__module__.split(".")[0] == "torch":
        g = g.detach().cpu()
        if str(g.dtype) == "torch.bfloat16":
            g = g.float()
        g = g.numpy()
    if not isinstance(g, np.ndarray):
        raise InvalidArgumentError(f"G must be a numpy array or torch tensor, got {type(g).__name__}")
    return g


# ----------------------------------------------------------------------------------------------
# Reading


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
        manifest = _read_manifest(self.path)
        if manifest.status == "building":
            shards = _read_progress(self.path)
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
            self._array = _open_array(self.path)
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


# ----------------------------------------------------------------------------------------------
# Writing


@dataclass
class _PendingShard:
    """A full shard whose data write is in flight; committed once the write has completed."""

    index: int
    start: int
    stop: int
    rows: list
    write: Any  # tensorstore.WriteFutures


class PefStoreWriter:
    """Appends PEFs to a store shard by shard; see :func:`create_store`.

    Two shard buffers: while one shard's data is written by TensorStore in the background, the
    next one fills. A shard is committed (table part, checksums, progress record) once its write
    has completed, before the following shard's write starts.
    """

    def __init__(self, root: Path, manifest: StoreManifest, shards: tuple[ShardRecord, ...]):
        self.path = root
        self._manifest = manifest
        self._config = manifest.config
        self._shards = list(shards)
        self._committed = shards[-1].stop if shards else 0
        self._next_index = self._committed
        self._array = _open_array(root, config=self._config)
        self._storage = np.dtype(np.float32 if self._config.dtype == "float32" else np.float16)
        self._buffers: list[np.ndarray | None] = [self._new_buffer(), None]
        self._active = 0
        self._rows: list[dict] = []
        self._pending: _PendingShard | None = None
        self._finalized = False

    def _new_buffer(self) -> np.ndarray:
        return np.empty((self._config.shard_examples, self._config.rank, self._config.dim),
                        dtype=self._storage)

    @property
    def _buffer(self) -> np.ndarray:
        return self._buffers[self._active]

    @property
    def num_examples(self) -> int:
        """Examples committed so far (a resumed build continues from here)."""
        return self._committed

    @property
    def num_buffered(self) -> int:
        """Examples appended but not yet committed."""
        return self._next_index - self._committed

    @property
    def config(self) -> StoreConfig:
        return self._config

    def __enter__(self) -> "PefStoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self._finalized:
            self.finalize()

    def append(self, G: Any, examples: Any = None) -> None:
        """Append ``k`` examples.

        Args:
            G: float ``[k, rank, dim]`` (numpy or torch). Examples of lower rank are zero rows.
            examples: None, a pyarrow Table or a list of ``k`` dicts with any of ``source_id``,
                ``text``, ``label``, ``prediction``, ``probs``, ``pef_norm``, ``rank``, ``status``.

        Examples whose PEF holds NaN or inf are stored as zeros with status ``non-finite``:
        never as valid data. Memory: two shard buffers, ``2 * shard_examples * rank * dim`` values.
        """
        if self._finalized:
            raise InvalidArgumentError(f"store {self.path} is finalized; it cannot take more examples")
        if self._pending is not None and self._pending.write.commit.done():
            self._commit_pending()  # commit as soon as possible: a kill loses less work
        g = _as_numpy(G)
        r, d = self._config.rank, self._config.dim
        if g.ndim != 3 or g.shape[1:] != (r, d):
            raise InvalidArgumentError(
                f"G must have shape [k, rank={r}, dim={d}], got {list(g.shape)}"
            )
        if not np.issubdtype(g.dtype, np.floating):
            raise InvalidArgumentError(f"G must be floating point, got dtype {g.dtype}")
        count = g.shape[0]
        finite, ranks = _finite_and_ranks(g, self._storage)
        rows = [
            finish_row(record, index=self._next_index + i,
                       rank=int(ranks[i]) if finite[i] else 0, max_rank=r, finite=bool(finite[i]))
            for i, record in enumerate(example_rows(examples, count))
        ]
        rows_to_table(rows)  # reject records that do not fit the schema before buffering anything
        position = 0
        while position < count:
            begin = len(self._rows)
            take = min(self._config.shard_examples - begin, count - position)
            target = self._buffer[begin:begin + take]
            with np.errstate(over="ignore", invalid="ignore"):
                np.copyto(target, g[position:position + take], casting="unsafe")
            target[~finite[position:position + take]] = 0
            self._rows.extend(rows[position:position + take])
            self._next_index += take
            position += take
            if len(self._rows) == self._config.shard_examples:
                self._write_shard()

    def _write_shard(self) -> None:
        """Start writing the filled buffer as the next shard, then switch buffers."""
        count = len(self._rows)
        if count == 0:
            return
        self._commit_pending()
        index = len(self._shards)
        start, stop = self._committed, self._committed + count
        if self._array.domain.exclusive_max[0] < stop:
            self._array = self._array.resize(exclusive_max=[stop, None, None], expand_only=True).result()
        write = self._array[start:stop].write(self._buffer[:count])
        self._pending = _PendingShard(index, start, stop, self._rows, write)
        self._rows = []
        self._active ^= 1
        if self._buffers[self._active] is None:
            self._buffers[self._active] = self._new_buffer()

    def _commit_pending(self) -> None:
        """Wait for the shard in flight, write its table part, then its progress record."""
        pending = self._pending
        if pending is None:
            return
        pending.write.result()
        table_bytes = _parquet_bytes(rows_to_table(pending.rows))
        _files.atomic_write_bytes(shard_table_path(self.path, pending.index), table_bytes, fsync=False)
        record = ShardRecord(
            index=pending.index, start=pending.start, stop=pending.stop,
            data_checksum=_files.file_checksum(shard_data_path(self.path, pending.index)),
            table_checksum=_files.bytes_checksum(table_bytes),
        )
        self._shards.append(record)
        _files.atomic_write_json(self.path / PROGRESS, {"shards": [s.to_dict() for s in self._shards]})
        self._committed = pending.stop
        self._pending = None

    def abort(self) -> None:
        """Wait for a shard write in flight without committing it (before deleting the store)."""
        if self._pending is not None:
            try:
                self._pending.write.result()
            except Exception:  # the store is being thrown away
                pass
            self._pending = None

    def finalize(self) -> PefStore:
        """Commit the last (partial) shard and write the finalized manifest; returns a reader."""
        if self._finalized:
            return open_store(self.path)
        self._write_shard()
        self._commit_pending()
        provenance = dict(self._manifest.provenance, finalized=now_iso())
        manifest = self._manifest.replace(
            status="finalized", num_examples=self._committed, shards=tuple(self._shards),
            provenance=provenance,
        )
        _files.atomic_write_json(self.path / MANIFEST, manifest.to_dict())
        (self.path / PROGRESS).unlink(missing_ok=True)
        self._finalized = True
        return open_store(self.path)


def _finite_and_ranks(g: np.ndarray, storage: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Per example: are all values finite once stored in ``storage``, and how many nonzero rows.

    One float32 pass over ``g``; examples whose float32 row norms overflow are re-checked in float64.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.einsum("krd,krd->kr", g, g)
        finite = np.isfinite(norms).all(axis=1)
        for i in np.flatnonzero(~finite):
            if np.isfinite(g[i]).all():
                norms[i] = np.einsum("rd,rd->r", g[i], g[i], dtype=np.float64)
                finite[i] = True
        if storage == np.float16:
            finite &= np.abs(g).max(axis=(1, 2), initial=0) <= np.finfo(np.float16).max
    return finite, (norms > 0).sum(axis=1)


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _discard_uncommitted(root: Path, shards: list[ShardRecord], shard_examples: int) -> list[ShardRecord]:
    """Remove what an interrupted build left beyond its last committed full shard."""
    if shards and shards[-1].num_examples < shard_examples:
        shards = shards[:-1]  # a partial last shard is only written by finalize: redo it
        _files.atomic_write_json(root / PROGRESS, {"shards": [s.to_dict() for s in shards]})
    keep = len(shards)
    chunk_root = root / PEFS / "c"
    if chunk_root.is_dir():
        for entry in chunk_root.iterdir():
            if not entry.name.isdigit() or int(entry.name) >= keep:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for entry in (root / EXAMPLES).iterdir():
        match = _PART_RE.match(entry.name)
        if match is None or int(match.group(1)) >= keep:
            entry.unlink()
    for partial in root.rglob("*.partial"):
        partial.unlink()
    return shards


def create_store(
    path: str | os.PathLike,
    *,
    rank: int,
    dim: int,
    projection: Any,
    dtype: str = "float32",
    overwrite: bool = False,
    resume: bool = False,
    kind: str = "lrm-pef",
    parameter_layout: ParameterLayout | None = None,
    model: ModelIdentity | None = None,
    pef_spec: dict | None = None,
    shard_examples: int | None = None,
    chunk_examples: int | None = None,
    command: str | None = None,
    extra_provenance: dict | None = None,
) -> PefStoreWriter:
    """Create a PEF store (or resume one) and return its writer.

    Args:
        path: directory of the store.
        rank, dim: r and d of ``G[m, r, d]``.
        projection: a :class:`~npeff.cuda_ops.ProjectionSpec` or a dict such as
            ``{"kind": "ssp-v1", "seed": 0}``; ``{"kind": "external"}`` for data projected
            elsewhere, ``{"kind": "none"}`` for unprojected rows.
        dtype: storage dtype, ``"float32"`` or ``"float16"``; reads return float32.
        overwrite: replace an existing store at ``path``.
        resume: continue an interrupted build with the same arguments (after its last
            committed shard: the caller appends from ``writer.num_examples`` on).
        kind: ``"lrm-pef"`` or ``"gradient"``.
        parameter_layout, model, pef_spec: recorded in the manifest.
        shard_examples, chunk_examples: examples per shard / per inner chunk (defaults: ~128 MiB
            shards of ~4 MiB chunks).
        command: the command line recorded in the provenance (default ``sys.argv``).
        extra_provenance: more provenance fields (e.g. the stores a merge came from).

    Raises:
        StoreExistsError: a store exists and neither ``resume`` (with equal arguments) nor
            ``overwrite`` was asked for, or the path is a non-empty directory that is not a store.
    """
    root = Path(path)
    if shard_examples is None or chunk_examples is None:
        default_shard, default_chunk = default_layout(rank, dim, dtype) if (
            isinstance(rank, int) and isinstance(dim, int) and rank > 0 and dim > 0) else (1, 1)
        if chunk_examples is None:
            chunk_examples = min(default_chunk, shard_examples) if shard_examples else default_chunk
            if shard_examples is not None and shard_examples % chunk_examples:
                chunk_examples = 1
        if shard_examples is None:
            shard_examples = max(default_shard // chunk_examples, 1) * chunk_examples
    config = StoreConfig(
        kind=kind, rank=rank, dim=dim, dtype=dtype, projection=projection,
        shard_examples=shard_examples, chunk_examples=chunk_examples,
        parameter_layout=parameter_layout, model=model, pef_spec=pef_spec,
    )
    if root.exists() and not root.is_dir():
        raise StoreExistsError(f"{root} exists and is a file, not a store directory")
    is_store = (root / MANIFEST).is_file()
    if root.exists() and not is_store and any(root.iterdir()):
        raise StoreExistsError(
            f"{root} exists, is not empty and is not an npeff store; refusing to write into it "
            f"(choose another path or empty it)"
        )
    if is_store and overwrite:
        shutil.rmtree(root)
        is_store = False
    if is_store:
        existing = _read_manifest(root)
        differences = existing.config.differences(config)
        if differences:
            raise StoreExistsError(
                f"a store with different arguments exists at {root}:\n" + "\n".join(differences)
                + "\npass overwrite=True (--overwrite) to replace it"
            )
        if not resume:
            raise StoreExistsError(
                f"a store already exists at {root} ({existing.status}); pass resume=True "
                f"(--resume) to continue it or overwrite=True (--overwrite) to replace it"
            )
        if existing.status == "finalized":
            raise StoreExistsError(f"the store at {root} is already finalized; nothing to resume")
        shards = _discard_uncommitted(root, list(_read_progress(root)), config.shard_examples)
        writer = PefStoreWriter(root, existing, tuple(shards))
        if writer._array.domain.exclusive_max[0] > writer.num_examples:
            writer._array = writer._array.resize(
                exclusive_max=[writer.num_examples, None, None], shrink_only=True).result()
        return writer
    (root / EXAMPLES).mkdir(parents=True, exist_ok=True)
    provenance = dict(new_provenance(command), **(extra_provenance or {}))
    manifest = StoreManifest(config=config, provenance=provenance)
    _files.atomic_write_json(root / MANIFEST, manifest.to_dict())
    return PefStoreWriter(root, manifest, ())
