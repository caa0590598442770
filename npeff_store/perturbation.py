"""Perturbation results written by ``npeff perturb``: a directory with

- ``manifest.json``: the format, the settings, the decomposition, store and model perturbed;
- ``components/c-<component>.json``: one record per component, written when its evaluation ends
  (a killed run resumes after the last one);
- ``components.parquet``: every record, with a declared Arrow schema (:data:`COMPONENT_SCHEMA`);
- ``summary.json``: the geometric means over the components (paper, Table 2) and the settings;
- ``directions/c-<component>.npz`` (optional): the reconstructed parameter-space direction, sparse
  (``indices``, ``values``, ``n``), for reuse.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from npeff.errors import StoreCorruptError, StoreExistsError, StoreNotFoundError
from npeff.store import _files

FORMAT_NAME = "npeff-perturbation"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUMMARY = "summary.json"
TABLE = "components.parquet"
RECORDS = "components"
DIRECTIONS = "directions"

#: one row per perturbed component
COMPONENT_SCHEMA = pa.schema([
    pa.field("component", pa.int64(), nullable=False),
    pa.field("kl_ratio", pa.float64()),          # the larger of the two signs
    pa.field("kl_ratio_plus", pa.float64()),
    pa.field("kl_ratio_minus", pa.float64()),
    pa.field("norm_ratio", pa.float64()),        # mean PEF norm, top examples / baseline
    pa.field("magnitude", pa.float64()),         # L2 norm of the parameter change
    pa.field("kl_top_plus", pa.float64()),       # mean KL of the top examples, + sign
    pa.field("kl_top_minus", pa.float64()),
    pa.field("kl_baseline_plus", pa.float64()),  # mean KL of the baseline examples, + sign
    pa.field("kl_baseline_minus", pa.float64()),
    pa.field("n_top", pa.int64()),
    pa.field("u_nonzero", pa.int64()),
    pa.field("fpc_iterations", pa.int64()),
    pa.field("seconds", pa.float64()),
])


def _record_path(directory: Path, component: int) -> Path:
    return directory / RECORDS / f"c-{component:06d}.json"


def prepare_perturbation_dir(path: str | os.PathLike, manifest: dict, *, overwrite: bool, inputs=()) -> dict[int, dict]:
    """Make ``path`` the output of a run described by ``manifest``; returns the records already there.

    A directory of an earlier run with the same manifest is resumed (its records are returned); one
    with another manifest, or anything else, is refused unless ``overwrite`` (and never replaced
    when it is not a perturbation directory); nor one that overlaps ``inputs`` (the store, the
    decomposition).
    """
    payload = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **manifest}

    def same_run(p: Path) -> bool:
        try:
            return _files.read_json(p / MANIFEST) == payload
        except (StoreNotFoundError, StoreCorruptError, OSError, ValueError):
            return False

    path = _files.prepare_output_dir(path, what="perturbation directory", overwrite=overwrite, resume=same_run,
                                     exists=StoreExistsError, inputs=inputs,
                                     is_ours=lambda p: _files.manifest_format(p) == FORMAT_NAME)
    (path / RECORDS).mkdir(exist_ok=True)
    if not (path / MANIFEST).is_file():
        _files.atomic_write_json(path / MANIFEST, payload)
    records = {}
    for record in sorted((path / RECORDS).glob("c-*.json")):
        data = _files.read_json(record, corrupt=StoreCorruptError)
        records[int(data["component"])] = data
    return records


def write_record(path: Path, record: dict) -> None:
    """Commit one component's record (atomic: present whole or absent)."""
    _files.atomic_write_json(_record_path(Path(path), int(record["component"])), record)


def geometric_mean(values) -> float | None:
    """The geometric mean of the positive finite values (None when there are none)."""
    kept = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    return math.exp(sum(math.log(v) for v in kept) / len(kept)) if kept else None


def write_results(path: Path, records: dict[int, dict], summary: dict) -> None:
    """Write the table of all records and the summary (both atomically)."""
    rows = [records[c] for c in sorted(records)]
    table = pa.Table.from_pylist([{f.name: row.get(f.name) for f in COMPONENT_SCHEMA} for row in rows],
                                 schema=COMPONENT_SCHEMA)
    sink = pa.BufferOutputStream()
    import pyarrow.parquet as pq

    pq.write_table(table, sink)
    _files.atomic_write_bytes(Path(path) / TABLE, sink.getvalue().to_pybytes())
    _files.atomic_write_json(Path(path) / SUMMARY, summary)


def save_direction(path: Path, component: int, u: np.ndarray) -> None:
    """Save a parameter-space direction ``[n]`` sparsely (its non-zero entries) for reuse."""
    (Path(path) / DIRECTIONS).mkdir(exist_ok=True)
    indices = np.flatnonzero(u)
    with _files.atomic_write(Path(path) / DIRECTIONS / f"c-{component:06d}.npz", "wb", fsync=False) as handle:
        np.savez(handle, indices=indices.astype(np.int64), values=u[indices].astype(np.float32),
                 n=np.int64(u.shape[0]))


def load_direction(path: str | os.PathLike, component: int) -> np.ndarray:
    """A saved direction as a dense float32 ``[n]`` array."""
    file = Path(path) / DIRECTIONS / f"c-{component:06d}.npz"
    if not file.is_file():
        raise StoreNotFoundError(f"no saved direction of component {component} in {path} (run with --save-directions)")
    with np.load(file, allow_pickle=False) as data:
        u = np.zeros(int(data["n"]), dtype=np.float32)
        u[data["indices"]] = data["values"]
    return u


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """A finished (or partial) perturbation run: ``manifest``, ``summary`` and ``records`` by component."""

    path: Path
    manifest: dict
    summary: dict | None
    records: dict[int, dict]


def open_perturbation(path: str | os.PathLike) -> Perturbation:
    """Read the results of ``npeff perturb`` in ``path``."""
    path = Path(path)
    manifest = _files.read_json(path / MANIFEST, what="perturbation manifest", missing=StoreNotFoundError,
                                corrupt=StoreCorruptError)
    if manifest.get("format") != FORMAT_NAME:
        raise StoreCorruptError(f"{path / MANIFEST} is not an npeff perturbation manifest")
    summary = (_files.read_json(path / SUMMARY, corrupt=StoreCorruptError) if (path / SUMMARY).is_file() else None)
    records = {int(r["component"]): r for r in (_files.read_json(f, corrupt=StoreCorruptError)
                                                 for f in sorted((path / RECORDS).glob("c-*.json")))}
    return Perturbation(path, manifest, summary, records)
