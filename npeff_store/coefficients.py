"""Coefficient directories written by ``npeff fit``: ``W.npy`` ``[m, C]`` (the fitted coefficients of a
store's examples for a decomposition's components), ``pef_norms.npy`` ``[m]`` when the PEFs were
normalised as they were read, and ``manifest.json``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from npeff.errors import StoreCorruptError, StoreExistsError, StoreNotFoundError
from npeff.store import _files
from npeff.store._lock import output_lock
from npeff.store.arrays import load_array, save_array

FORMAT_NAME = "npeff-coefficients"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclasses.dataclass(frozen=True, kw_only=True)
class CoefficientsManifest:
    """What ``manifest.json`` of fitted coefficients records.

    Attributes:
        decomposition: the decomposition's path (whose H was held fixed).
        store, store_fingerprint, store_content_id: the store the coefficients are of.
        steps: multiplicative W updates made.
        num_examples, n_components: m and C.
        provenance: package versions, command line and timestamps.
        normalization: ``normalize``, ``store`` and ``scaled``, as in
            :class:`~npeff.store.decomposition.DecompositionManifest` (None: not recorded).
    """

    decomposition: str
    store: str
    store_fingerprint: str
    store_content_id: str | None
    steps: int
    num_examples: int
    n_components: int
    provenance: dict = dataclasses.field(default_factory=dict)
    normalization: dict | None = None

    def to_dict(self) -> dict:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "manifest") -> CoefficientsManifest:
        if data.get("format") != FORMAT_NAME or data.get("format_version") != FORMAT_VERSION:
            raise StoreCorruptError(f"{source} is not an npeff coefficients manifest (version {FORMAT_VERSION})")
        names = {field.name for field in dataclasses.fields(cls)}
        try:
            return cls(**{key: value for key, value in data.items() if key in names})
        except TypeError as error:
            raise StoreCorruptError(f"{source} is incomplete: {error}") from None


@dataclasses.dataclass(frozen=True)
class Coefficients:
    """Fitted coefficients: ``W`` ``[m, C]`` and their :class:`CoefficientsManifest`."""

    path: Path
    W: np.ndarray
    meta: CoefficientsManifest


def _is_coefficients(path: Path) -> bool:
    return _files.manifest_format(path) == FORMAT_NAME


def check_coefficients_dir(path: str | os.PathLike, *, overwrite: bool = False, inputs=()) -> None:
    """Refuse ``path`` before any work, as :func:`write_coefficients` would (touches nothing); also
    when it is, contains or lies inside one of ``inputs`` (the decomposition, the store)."""
    _files.check_output_dir(path, what="coefficients directory", overwrite=overwrite, exists=StoreExistsError,
                            is_ours=_is_coefficients, inputs=inputs)


def write_coefficients(path: str | os.PathLike, W: np.ndarray, manifest: CoefficientsManifest, *,
                       overwrite: bool = False, extra: dict[str, np.ndarray] | None = None, inputs=()) -> Path:
    """Write ``W`` (and ``extra`` arrays, e.g. ``pef_norms``) and its manifest to the directory
    ``path`` (refused if it holds anything else, earlier coefficients without ``overwrite``, or
    when it overlaps one of ``inputs``), holding the output's lock while it writes."""
    with output_lock(path, "coefficients directory"):
        path = _files.prepare_output_dir(path, what="coefficients directory", overwrite=overwrite,
                                         exists=StoreExistsError, is_ours=_is_coefficients, inputs=inputs)
        for name, array in {"W": W, **(extra or {})}.items():
            save_array(path / f"{name}.npy", array)
        _files.atomic_write_json(path / MANIFEST, manifest.to_dict())
    return path


def open_coefficients(path: str | os.PathLike) -> Coefficients:
    """Read coefficients written by :func:`write_coefficients`."""
    path = Path(path)
    data = _files.read_json(path / MANIFEST, what="coefficients manifest", missing=StoreNotFoundError,
                            corrupt=StoreCorruptError)
    meta = CoefficientsManifest.from_dict(data, source=str(path / MANIFEST))
    return Coefficients(path, load_array(path / "W.npy", corrupt=StoreCorruptError), meta)
