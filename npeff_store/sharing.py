"""Sharing PEF stores: describe (info), check (verify), combine (merge) and export them."""

from __future__ import annotations

import collections
import dataclasses
import os
import shutil
from pathlib import Path
from typing import Iterable

import pyarrow.parquet as pq

from npeff.errors import IncompatibleStoresError, InvalidArgumentError, NpeffError, StoreExistsError
from npeff.store import _files
from npeff.store.manifest import canonical_json
from npeff.store._layout import EXAMPLES, MANIFEST, PEFS, PROGRESS, shard_data_path, shard_table_path
from npeff.store._layout import open_array as _open_array
from npeff.store.reader import PefStore, open_store
from npeff.store.writer import create_store
from npeff.store.schema import EXAMPLE_SCHEMA

EXPORT_MANIFEST = "npeff_manifest.json"


def _progress(iterable, *, total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="shard", disable=not enabled, leave=False)


def store_info(store: PefStore) -> dict:
    """A JSON-able description of a store: shape, size on disk, spec, provenance, fingerprint."""
    config = store.config
    statuses = collections.Counter(store.examples.column("status").to_pylist())
    layout = config.parameter_layout
    return {
        "path": str(store.path),
        "status": store.status,
        "kind": config.kind,
        "num_examples": store.num_examples,
        "rank": config.rank,
        "dim": config.dim,
        "dtype": config.dtype,
        "num_shards": len(store.shards),
        "shard_examples": config.shard_examples,
        "chunk_examples": config.chunk_examples,
        "size_on_disk": _files.directory_size(store.path),
        "fingerprint": store.fingerprint,
        "projection": config.projection,
        "parameter_layout": None if layout is None else {
            "num_parameters": len(layout.names), "n_total": layout.n_total, "names": list(layout.names)},
        "model": None if config.model is None else config.model.to_dict(),
        "pef_spec": config.pef_spec,
        "example_status": dict(statuses),
        "provenance": store.manifest["provenance"],
    }


def format_info(info: dict) -> str:
    """Human-readable rendering of :func:`store_info`."""
    projection = info["projection"]
    if projection["kind"] == "ssp-v1":
        projection_text = (f"ssp-v1 (seed {projection['seed']}, d {projection['d']}, "
                           f"region size {projection['region_size']})")
    else:
        projection_text = projection["kind"]
    layout = info["parameter_layout"]
    layout_text = ("not recorded" if layout is None
                   else f"{layout['num_parameters']} tensors, n = {layout['n_total']:,}")
    model = info["model"]
    provenance = info["provenance"]
    lines = [
        ("store", f"{info['path']} ({info['status']})"),
        ("kind", info["kind"]),
        ("shape", f"m = {info['num_examples']:,} examples, r = {info['rank']}, d = {info['dim']}, "
                  f"{info['dtype']}"),
        ("shards", f"{info['num_shards']} of up to {info['shard_examples']} examples "
                   f"(checked chunks of {info['chunk_examples']})"),
        ("on disk", _human_bytes(info["size_on_disk"])),
        ("projection", projection_text),
        ("parameters", layout_text),
        ("model", "not recorded" if model is None
         else f"{model['name']}" + (f" @ {model['revision']}" if model.get("revision") else "")),
        ("pef spec", "not recorded" if info["pef_spec"] is None else canonical_json(info["pef_spec"])),
        ("examples", ", ".join(f"{k}: {v:,}" for k, v in sorted(info["example_status"].items())) or "none"),
        ("fingerprint", info["fingerprint"]),
        ("created", f"{provenance.get('created')} by npeff {provenance.get('packages', {}).get('npeff', '?')}"),
        ("finalized", str(provenance.get("finalized"))),
        ("command", str(provenance.get("command"))),
    ]
    if "merged_from" in provenance:
        lines.append(("merged from", ", ".join(p["path"] for p in provenance["merged_from"])))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


def _human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"
        value /= 1024
    return f"{count} B"


# ----------------------------------------------------------------------------------------------
# verify


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

    Problems name the shard (and file) at fault. Reads every byte of the store once.
    """
    store = open_store(path)  # manifest problems raise StoreCorruptError here
    report = VerifyReport(str(store.path), len(store.shards), store.num_examples, store.status)
    if store.status == "building":
        report.notes.append(f"the store is still being built: checking its {len(store.shards)} committed shards")
    try:
        array = _open_array(store.path)
        if tuple(array.domain.shape[1:]) != (store.rank, store.dim):
            report.problems.append(f"tensor shape {list(array.domain.shape)} does not match r={store.rank}, d={store.dim}")
        if str(array.dtype.numpy_dtype) != store.config.dtype:
            report.problems.append(f"tensor dtype {array.dtype.numpy_dtype} differs from the manifest's {store.config.dtype}")
        if array.domain.shape[0] < store.num_examples:
            report.problems.append(f"tensor holds {array.domain.shape[0]} examples, the manifest {store.num_examples}")
    except ValueError as error:
        report.problems.append(f"tensor metadata {PEFS}/zarr.json cannot be opened: {error}")
    for shard in _progress(store.shards, total=len(store.shards), desc="verify", enabled=progress):
        report.problems.extend(_verify_shard(store, shard))
    known = {MANIFEST, PROGRESS, PEFS, EXAMPLES}
    extra = sorted(p.name for p in store.path.iterdir() if p.name not in known)
    if extra:
        report.notes.append(f"files not part of the store: {', '.join(extra)}")
    return report


def _verify_shard(store: PefStore, shard) -> list[str]:
    problems = []
    label = f"shard {shard.index} (examples {shard.start}-{shard.stop - 1})"
    data_path = shard_data_path(store.path, shard.index)
    if not data_path.is_file():
        problems.append(f"{label}: data file {data_path.relative_to(store.path)} is missing")
    elif _files.file_checksum(data_path) != shard.data_checksum:
        problems.append(f"{label}: data file {data_path.relative_to(store.path)} fails its checksum")
    table_path = shard_table_path(store.path, shard.index)
    if not table_path.is_file():
        problems.append(f"{label}: table part {table_path.relative_to(store.path)} is missing")
        return problems
    if _files.file_checksum(table_path) != shard.table_checksum:
        problems.append(f"{label}: table part {table_path.relative_to(store.path)} fails its checksum")
        return problems
    try:
        table = pq.read_table(table_path)
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


# ----------------------------------------------------------------------------------------------
# merge


def check_compatible(stores: list[PefStore]) -> None:
    """Raise :class:`IncompatibleStoresError` unless the stores can be merged or compared."""
    first = stores[0]
    reference = first.config.to_dict()
    for other in stores[1:]:
        theirs = other.config.to_dict()
        differing = [
            key for key in ("projection", "parameter_layout", "kind", "rank", "dim", "dtype",
                            "pef_spec", "model")
            if canonical_json(reference[key]) != canonical_json(theirs[key])
        ]
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

    Example tables are carried over (``source_id``, text, labels, ...) and re-indexed.
    Memory: one shard at a time.
    """
    paths = [Path(p) for p in inputs]
    if not paths:
        raise InvalidArgumentError("merge needs at least one input store")
    out = Path(out)
    for path in paths:
        if path.resolve() == out.resolve():
            raise InvalidArgumentError(f"the output {out} is also an input; write the merge elsewhere")
    stores = [open_store(p) for p in paths]
    for store in stores:
        if store.status != "finalized":
            raise InvalidArgumentError(f"{store.path} is still being built; finalize it before merging")
    check_compatible(stores)
    config = stores[0].config
    merged_from = [{"path": str(s.path), "num_examples": s.num_examples, "fingerprint": s.fingerprint,
                    "command": s.manifest["provenance"].get("command")} for s in stores]
    writer = create_store(
        out, rank=config.rank, dim=config.dim, projection=config.projection, dtype=config.dtype,
        overwrite=overwrite, kind=config.kind, parameter_layout=config.parameter_layout,
        model=config.model, pef_spec=config.pef_spec, shard_examples=config.shard_examples,
        chunk_examples=config.chunk_examples, command=command,
        extra_provenance={"merged_from": merged_from},
    )
    total = sum(len(s.shards) for s in stores)
    chunks = (chunk_and_rows for store in stores for chunk_and_rows in _chunks_with_rows(store))
    try:
        for data, rows in _progress(chunks, total=total, desc="merge", enabled=progress):
            writer.append(data, rows)
        return writer.finalize()
    except BaseException:
        writer.abort()
        shutil.rmtree(out, ignore_errors=True)  # a failed merge leaves no half-written store
        raise


def _chunks_with_rows(store: PefStore):
    table = store.examples
    for chunk in store.iter_chunks():
        rows = table.slice(chunk.start, chunk.stop - chunk.start).drop_columns(["example_index"]).to_pylist()
        yield chunk.data, rows


# ----------------------------------------------------------------------------------------------
# export


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def export_hf(store_path: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
              progress: bool = False) -> Path:
    """Export a finalized store as a Hugging Face ``datasets`` folder.

    ``out/data/train-*.parquet`` hold the example table (loadable with
    ``datasets.load_dataset("parquet", data_files=...)`` or ``load_dataset(out)``), ``out/pefs``
    the zarr tensor (hard links when possible, else copies), ``out/npeff_manifest.json`` the
    manifest, ``out/README.md`` a dataset card. Written into ``out.partial`` and renamed at the end.
    """
    store = open_store(store_path)
    if store.status != "finalized":
        raise InvalidArgumentError(f"{store.path} is still being built; finalize it before exporting")
    out = Path(out)
    if out.exists():
        if not overwrite:
            raise StoreExistsError(f"{out} exists; pass --overwrite to replace it")
        if not (out / EXPORT_MANIFEST).is_file() and any(out.iterdir()):
            raise StoreExistsError(f"{out} is not an npeff export; refusing to replace it")
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "data").mkdir(parents=True)
    count = len(store.shards)
    for shard in _progress(store.shards, total=count, desc="export", enabled=progress):
        shutil.copyfile(shard_table_path(store.path, shard.index),
                        staging / "data" / f"train-{shard.index:05d}-of-{count:05d}.parquet")
    shutil.copytree(store.path / PEFS, staging / PEFS, copy_function=_link_or_copy)
    shutil.copyfile(store.path / MANIFEST, staging / EXPORT_MANIFEST)
    (staging / "README.md").write_text(_dataset_card(store))
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    return out


def _dataset_card(store: PefStore) -> str:
    info = store_info(store)
    name = store.path.name
    return f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
tags:
- npeff
- per-example-fisher
- interpretability
pretty_name: "{name}: NPEFF {info['kind']} store"
---

# {name}

Per-example Fisher matrices in low-rank form (`{info['kind']}`), exported from an
[npeff](https://pypi.org/project/npeff/) store.

- Examples: {info['num_examples']:,}; each PEF is `G[i]` of shape `[{info['rank']}, {info['dim']}]`
  ({info['dtype']} on disk), zero rows past the example's rank.
- Projection: `{canonical_json(info['projection'])}`
- Compatibility fingerprint: `{info['fingerprint']}`
- Model: `{canonical_json(info['model'])}`
- PEF spec: `{canonical_json(info['pef_spec'])}`

## Files

- `data/train-*.parquet`: one row per example (`example_index`, `source_id`, `text`, `label`,
  `prediction`, `probs`, `pef_norm`, `rank`, `status`). Rows whose `status` is not `ok` hold no
  valid PEF.
- `pefs/`: the tensor `G[m, r, d]` as a zarr v3 array (sharded, crc32c-checked).
- `npeff_manifest.json`: the full npeff manifest (parameter layout, provenance, checksums).

## Loading

```python
import datasets, tensorstore as ts
table = datasets.load_dataset("parquet", data_files="data/train-*.parquet", split="train")
G = ts.open({{"driver": "zarr3", "kvstore": {{"driver": "file", "path": "pefs"}}}}).result()
first = G[0].read().result()   # [{info['rank']}, {info['dim']}]
```
"""


__all__ = ["NpeffError", "VerifyReport", "check_compatible", "export_hf", "format_info",
           "merge_stores", "store_info", "verify_store"]
