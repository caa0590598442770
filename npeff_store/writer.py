"""Writing PEF stores: :func:`create_store` (new, resumed or replaced) and the
:class:`PefStoreWriter` that appends ``G[k, r, d]`` shard by shard.

A shard is committed by (1) writing its data file, (2) writing its table part, (3) rewriting
``progress.json`` with the shard's checksums. Each step replaces whole files atomically, so after
a kill a shard is either committed or absent; resuming deletes whatever an uncommitted shard left.
The manifest is written first (status ``building``) and last (``finalized``, with every shard).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from npeff.errors import InvalidArgumentError, StoreExistsError
from npeff.store import _files
from npeff.store._cleanup import discard_uncommitted
from npeff.store._lock import acquire_output_lock, release_output_lock
from npeff.store._values import finite_and_ranks
from npeff.store._layout import (
    EXAMPLES,
    MANIFEST,
    PROGRESS,
    TENSOR_METADATA,
    default_layout,
    holds_store,
    is_store,
    open_array,
    shard_data_path,
    shard_table_path,
    write_root_group,
)
from npeff.store.manifest import (
    NORMALIZED,
    ModelIdentity,
    ParameterLayout,
    ShardRecord,
    StoreConfig,
    StoreManifest,
)
from npeff.store.provenance import new_provenance, now_iso
from npeff.store.reader import PefStore, open_store, read_manifest, read_progress
from npeff.store.schema import example_rows, finish_row, rows_to_table


def _as_numpy(g: Any) -> np.ndarray:
    """``G`` as a numpy array: a torch tensor is moved to the CPU (bfloat16 widened to float32)."""
    if type(g).__module__.split(".")[0] == "torch":
        g = g.detach().cpu()
        if str(g.dtype) == "torch.bfloat16":
            g = g.float()
        g = g.numpy()
    if not isinstance(g, np.ndarray):
        raise InvalidArgumentError(f"G must be a numpy array or torch tensor, got {type(g).__name__}")
    return g


def write_progress(root: Path, shards: list[ShardRecord]) -> None:
    """Record ``shards`` as the committed ones (atomically: the commit point of the last one)."""
    _files.atomic_write_json(root / PROGRESS, {"shards": [s.to_dict() for s in shards]})


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
        self._array = open_array(root, config=self._config)
        if self._array.domain.exclusive_max[0] > self._committed:  # grown by an interrupted build
            self._array = self._array.resize(exclusive_max=[self._committed, None, None], shrink_only=True).result()
        self._storage = np.dtype(np.float32 if self._config.dtype == "float32" else np.float16)
        self._buffers: list[np.ndarray | None] = [self._new_buffer(), None]
        self._active = 0
        self._rows: list[dict] = []
        self._pending: _PendingShard | None = None
        self._finalized = False
        self._lock: Path | None = None  # the output lock, set by create_store

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
        finite, ranks = finite_and_ranks(g, self._storage)
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
        write_progress(self.path, self._shards)
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
        self._release_lock()

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            release_output_lock(lock)

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
            # the tensor no longer grows: its metadata is final, and readers check it on opening
            tensor_metadata_checksum=_files.file_checksum(self.path / TENSOR_METADATA),
        )
        write_root_group(self.path, self._config, consolidate=True)
        _files.atomic_write_json(self.path / MANIFEST, manifest.to_dict())
        (self.path / PROGRESS).unlink(missing_ok=True)
        self._finalized = True
        self._release_lock()
        return open_store(self.path)


def _parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as the bytes of a Parquet file (checksummed, then written atomically)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


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
    normalized: bool | None = None,
    shard_examples: int | None = None,
    chunk_examples: int | None = None,
    command: str | None = None,
    extra_provenance: dict | None = None,
    inputs: tuple = (),
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
        kind: ``"lrm-pef"``, or one of the rank-1 kinds ``"gradient"``, ``"divergence"``,
            ``"activation"`` (see :class:`~npeff.store.manifest.StoreConfig`).
        parameter_layout, model, pef_spec: recorded in the manifest.
        normalized: whether every appended PEF is already scaled to ``||G_i^T G_i||_F = 1`` (or is
            zero), recorded as ``pef_spec.normalization`` (``"unit-frobenius"`` or ``"none"``).
            None (default): as ``pef_spec`` says; a store that does not say counts as not
            normalised, and ``decompose``/``fit`` scale its PEFs to unit norm as they read them.
        shard_examples, chunk_examples: examples per shard / per inner chunk (defaults: ~128 MiB
            shards of ~4 MiB chunks).
        command: the command line recorded in the provenance (default ``sys.argv``).
        extra_provenance: more provenance fields (e.g. the stores a merge came from).
        inputs: paths the caller reads (a data file, a model folder, stores merged); a store
            path that is, contains or lies inside one is refused.

    One writer per store: the writer holds a lock (``.{name}.lock`` beside the store, see
    :mod:`npeff.store._lock`) until :meth:`~PefStoreWriter.finalize` or
    :meth:`~PefStoreWriter.abort`; a second writer of the same path is refused meanwhile.

    Raises:
        StoreExistsError: a store exists and neither ``resume`` (with equal arguments) nor
            ``overwrite`` was asked for, or the path is a non-empty directory that is not a store.
    """
    shard_examples, chunk_examples = _shard_and_chunk_examples(rank, dim, dtype, shard_examples, chunk_examples)
    pef_spec = _with_normalization(pef_spec, normalized)
    config = StoreConfig(
        kind=kind, rank=rank, dim=dim, dtype=dtype, projection=projection,
        shard_examples=shard_examples, chunk_examples=chunk_examples,
        parameter_layout=parameter_layout, model=model, pef_spec=pef_spec,
    )
    _files.refuse_resume_with_overwrite(resume, overwrite)
    lock = acquire_output_lock(path, "store")  # held by the writer until finalize or abort
    try:
        # an existing store is kept here: _resume_store decides against its manifest whether it may go on
        root = _files.prepare_output_dir(path, what="store", is_ours=holds_store, overwrite=overwrite,
                                         resume=lambda _root: True, exists=StoreExistsError, inputs=inputs)
        if is_store(root):
            writer = _resume_store(root, config, resume=resume)
        else:
            provenance = dict(new_provenance(command), **(extra_provenance or {}))
            manifest = StoreManifest(config=config, provenance=provenance)
            # the manifest first: a writer killed at any moment leaves an empty folder or a store
            _files.atomic_write_json(root / MANIFEST, manifest.to_dict())
            (root / EXAMPLES).mkdir(exist_ok=True)
            writer = PefStoreWriter(root, manifest, ())  # creates the tensor
            write_root_group(root, config, consolidate=False)
    except BaseException:
        release_output_lock(lock)
        raise
    writer._lock = lock
    return writer


def _with_normalization(pef_spec: Any, normalized: bool | None) -> Any:
    """``pef_spec`` with ``normalization`` set from ``normalized`` (as given when None)."""
    if normalized is None or not isinstance(pef_spec, (dict, type(None))):
        return pef_spec  # a pef_spec that is not a mapping is refused by StoreConfig
    stated = (pef_spec or {}).get("normalization")
    if not isinstance(normalized, bool) or (stated is not None and (stated in NORMALIZED) != normalized):
        raise InvalidArgumentError(f"normalized must be True or False and agree with pef_spec's normalization "
                                   f"({stated!r}), got {normalized!r}")
    return {**(pef_spec or {}), "normalization": stated or ("unit-frobenius" if normalized else "none")}


def _shard_and_chunk_examples(rank: Any, dim: Any, dtype: str, shard_examples: int | None,
                              chunk_examples: int | None) -> tuple[Any, Any]:
    """Fill in the sizes not given: ~128 MiB shards of ~4 MiB chunks, shards a multiple of chunks.

    Arguments are not validated here (``StoreConfig`` does that, with its messages).
    """
    if shard_examples is not None and chunk_examples is not None:
        return shard_examples, chunk_examples
    default_shard, default_chunk = default_layout(rank, dim, dtype) if (
        isinstance(rank, int) and isinstance(dim, int) and rank > 0 and dim > 0) else (1, 1)
    if chunk_examples is None:
        chunk_examples = min(default_chunk, shard_examples) if shard_examples else default_chunk
        if shard_examples is not None and shard_examples % chunk_examples:
            chunk_examples = 1
    if shard_examples is None:
        shard_examples = max(default_shard // chunk_examples, 1) * chunk_examples
    return shard_examples, chunk_examples


def _resume_store(root: Path, config: StoreConfig, *, resume: bool) -> PefStoreWriter:
    """A writer that continues the store at ``root`` after its last committed shard.

    Raises:
        StoreExistsError: ``config`` differs from the store's (both shown), ``resume`` was not
            asked for, or the store is finalized.
    """
    existing = read_manifest(root)
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
    shards = list(read_progress(root))
    if shards and shards[-1].num_examples < config.shard_examples:
        shards = shards[:-1]  # a partial last shard is only written by finalize: redo it
        write_progress(root, shards)
    discard_uncommitted(root, len(shards))
    return PefStoreWriter(root, existing, tuple(shards))
