"""Combining PEF stores (``npeff merge``): the compatibility check and the concatenation of
compatible stores, e.g. the pieces of one build run on several machines."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from npeff.errors import IncompatibleStoresError, InvalidArgumentError, StoreExistsError
from npeff.store import _files
from npeff.store._layout import holds_store
from npeff.store._lock import output_lock
from npeff.store._progress_bar import shard_progress
from npeff.store.integrity import check_shard_data
from npeff.store.manifest import canonical_json
from npeff.store.location import refuse_url_output
from npeff.store.reader import PefStore, open_store
from npeff.store.writer import create_store

#: what two stores must share to be merged or compared, in the order differences are reported
COMPATIBILITY_FIELDS = ("projection", "parameter_layout", "kind", "rank", "dim", "dtype", "pef_spec", "model")


def check_compatible(stores: list[PefStore]) -> None:
    """Raise :class:`IncompatibleStoresError` unless the stores can be merged or compared.

    The message names both stores, their fingerprints, and each differing field of both.
    """
    first = stores[0]
    reference = first.config.to_dict()
    for other in stores[1:]:
        theirs = other.config.to_dict()
        differing = [key for key in COMPATIBILITY_FIELDS
                     if canonical_json(reference[key]) != canonical_json(theirs[key])]
        if differing:
            details = "\n".join(
                f"  {key}: {first.path} has {canonical_json(reference[key])[:300]}\n"
                f"  {' ' * len(key)}  {other.path} has {canonical_json(theirs[key])[:300]}"
                for key in differing
            )
            raise IncompatibleStoresError(
                f"stores {first.path} and {other.path} are not compatible "
                f"(fingerprints {first.fingerprint} and {other.fingerprint}); they differ in "
                f"{', '.join(differing)}:\n{details}"
            )


def merge_stores(out: str | os.PathLike, inputs: Iterable[str | os.PathLike], *,
                 overwrite: bool = False, progress: bool = False, command: str | None = None) -> PefStore:
    """Concatenate compatible finalized stores, in the given order, into a new store ``out``.

    Example tables are carried over (``source_id``, text, labels, ...) and re-indexed; the
    provenance lists the inputs under ``merged_from``. Every input is verified first
    (:func:`verify_inputs`): damage is refused, never carried into fresh checksums. A failed merge
    leaves no store at ``out``.
    Memory: one shard at a time (plus the writer's two shard buffers).

    Raises:
        InvalidArgumentError: no inputs, ``out`` is one of them, or an input is not finalized.
        IncompatibleStoresError: the inputs differ (see :func:`check_compatible`).
        StoreExistsError: ``out`` holds a store and ``overwrite`` is not set, or it is a file or
            a non-empty directory that is not a store.
        StoreCorruptError: an input fails verification (see :func:`verify_inputs`).
    """
    inputs = list(inputs)
    if not inputs:
        raise InvalidArgumentError("merge needs at least one input store")
    refuse_url_output(out, "store")
    out = Path(out)
    stores = [open_store(p) for p in inputs]  # local paths or URLs
    local_inputs = [store.location.local for store in stores if store.location.local is not None]
    _files.refuse_overlap(out, local_inputs, "store")
    with output_lock(out, "store"):
        return _merge_into(out, stores, overwrite=overwrite, progress=progress, command=command,
                           inputs=tuple(local_inputs))


def _merge_into(out: Path, stores: list[PefStore], *, overwrite: bool, progress: bool, command: str | None,
                inputs: tuple) -> PefStore:
    """The merge of :func:`merge_stores`, with the output's lock held."""
    for store in stores:
        if store.status != "finalized":
            raise InvalidArgumentError(f"{store.path} is still being built; finalize it before merging")
    check_compatible(stores)
    verify_inputs(stores, progress=progress)  # before the output is touched (--overwrite removes it)
    _files.prepare_output_dir(out, what="store", is_ours=holds_store, overwrite=overwrite,
                              exists=StoreExistsError, inputs=inputs)
    config = stores[0].config
    merged_from = [{"path": s.url, "num_examples": s.num_examples, "fingerprint": s.fingerprint,
                    "command": s.manifest["provenance"].get("command")} for s in stores]
    writer = create_store(
        out, rank=config.rank, dim=config.dim, projection=config.projection, dtype=config.dtype,
        kind=config.kind, parameter_layout=config.parameter_layout,
        model=config.model, pef_spec=config.pef_spec, shard_examples=config.shard_examples,
        chunk_examples=config.chunk_examples, command=command,
        extra_provenance={"merged_from": merged_from}, inputs=inputs,
    )
    total = sum(len(s.shards) for s in stores)
    chunks = (chunk_and_rows for store in stores for chunk_and_rows in _chunks_with_rows(store))
    try:
        for data, rows in shard_progress(chunks, total=total, desc="merge", enabled=progress):
            writer.append(data, rows)
        return writer.finalize()
    except BaseException:
        writer.abort()
        shutil.rmtree(out, ignore_errors=True)  # a failed merge leaves no half-written store
        raise


def verify_inputs(stores: list[PefStore], *, progress: bool = False) -> None:
    """Refuse to merge damaged stores: every input's tensor metadata against its manifest, every
    table part (:attr:`PefStore.examples`) and every shard's data file against its recorded
    checksum, before anything is written. The merge then writes fresh checksums of verified data
    only; the copy pass does not hash the shards again (:func:`~npeff.store.integrity.check_shard_data`
    remembers them). Memory: one table at a time, one 16 MiB block of a shard.

    Raises:
        StoreCorruptError: a file fails a check (the message names the store, the shard and the file).
    """
    for store in stores:
        _ = store.array  # opening the tensor checks its metadata against the manifest
        _ = store.examples  # reading the table checks every part
    shards = [(store, shard) for store in stores for shard in store.shards]
    for store, shard in shard_progress(shards, total=len(shards), desc="verify inputs", enabled=progress):
        check_shard_data(store.location, shard, where=str(store.path))


def _chunks_with_rows(store: PefStore) -> Iterator[tuple[np.ndarray, list[dict]]]:
    """Each shard of ``store`` as ``(data[k, r, d], k example records without their index)``."""
    table = store.examples
    for chunk in store.iter_chunks():
        rows = table.slice(chunk.start, chunk.stop - chunk.start).drop_columns(["example_index"]).to_pylist()
        yield chunk.data, rows
