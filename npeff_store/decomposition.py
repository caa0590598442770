"""Decomposition directories: ``manifest.json``, ``W.npy`` ``[m, C]``, ``H.npy`` ``[C, d]`` and
``losses.npy`` (one loss per step), ``pef_norms.npy`` ``[m]`` when the PEFs were normalised as they
were read, plus ``checkpoint/`` while a run is in progress (see :mod:`npeff.store.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from npeff.errors import StoreCorruptError, StoreExistsError, StoreNotFoundError
from npeff.store import _files
from npeff.store.arrays import load_array, save_array
from npeff.store.checkpoint import CHECKPOINT_DIR

FORMAT_NAME = "npeff-decomposition"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = ("W", "H", "losses")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecompositionManifest:
    """What ``manifest.json`` of a decomposition records.

    Attributes:
        n_components, num_examples, dim: C, m and d.
        config: the decomposition's settings (:class:`npeff.ops.DecomposeConfig` as a dict).
        store: where the decomposed store is: its absolute path or URL, a Hub URL pinned to its
            commit (the path as given, for decompositions of earlier versions; None if unknown).
        store_fingerprint: the store's projection and parameter-layout fingerprint.
        store_content_id: the store's content identity (its shard checksums).
        memory_budget, cluster, device: how it ran.
        final_loss, median_step_seconds: the last step's loss and the median step time.
        provenance: package versions, command line and timestamps.
        method: what made it: ``npeff`` (the decomposition), ``gradient-clustering`` or ``sae``
            (the paper's baselines, which write the same format: components as H, scores as W).
        details: what the method reports of its run (iterations, empty clusters, dead latents...).
        normalization: how the PEFs' sizes were treated: ``normalize`` (asked for), ``store`` (the
            store's ``pef_spec.normalization``) and ``scaled`` (each PEF scaled to unit
            ``||G_i^T G_i||_F`` as it was read; its norm before is in ``pef_norms.npy``). None
            for decompositions that do not record it (earlier versions used PEFs as stored).
    """

    n_components: int
    num_examples: int
    dim: int
    config: dict = dataclasses.field(default_factory=dict)
    store_fingerprint: str | None = None
    store: str | None = None
    store_content_id: str | None = None
    memory_budget: int | None = None
    cluster: str | None = None
    device: str = "cpu"
    final_loss: float | None = None
    median_step_seconds: float | None = None
    provenance: dict = dataclasses.field(default_factory=dict)
    method: str = "npeff"
    details: dict = dataclasses.field(default_factory=dict)
    normalization: dict | None = None

    def to_dict(self) -> dict:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": "decomposition",
                **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "manifest") -> DecompositionManifest:
        """Parse a manifest; :class:`StoreCorruptError` naming ``source`` when it is not one."""
        if data.get("format") != FORMAT_NAME:
            raise StoreCorruptError(f"{source} is not an npeff decomposition manifest")
        if data.get("format_version") != FORMAT_VERSION:
            raise StoreCorruptError(f"{source} has format version {data.get('format_version')!r}; this npeff "
                                    f"reads version {FORMAT_VERSION}")
        names = {field.name for field in dataclasses.fields(cls)}
        try:
            return cls(**{key: value for key, value in data.items() if key in names})
        except TypeError as error:
            raise StoreCorruptError(f"{source} is incomplete: {error}") from None


class Decomposition:
    """A finished decomposition: ``.W`` ``[m, C]``, ``.H`` ``[C, d]``, ``.losses``, ``.config``.

    ``.meta`` is the parsed :class:`DecompositionManifest`, ``.manifest`` the JSON as written (with
    any field a later version adds). Arrays are read on first use.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise StoreNotFoundError(f"no decomposition at {self.path}: the path does not exist")
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise StoreNotFoundError(f"{self.path} is not an npeff decomposition: it has no {MANIFEST}")
        data = _files.read_json(manifest_path, what="decomposition manifest", missing=StoreNotFoundError,
                                corrupt=StoreCorruptError)
        self.meta = DecompositionManifest.from_dict(data, source=str(manifest_path))
        self.manifest = data
        self._arrays: dict[str, np.ndarray] = {}

    def _array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = load_array(self.path / f"{name}.npy", corrupt=StoreCorruptError)
        return self._arrays[name]

    @property
    def config(self) -> dict:
        return self.meta.config

    @property
    def W(self) -> np.ndarray:
        return self._array("W")

    @property
    def H(self) -> np.ndarray:
        return self._array("H")

    @property
    def losses(self) -> np.ndarray:
        return self._array("losses")

    @property
    def method(self) -> str:
        """``npeff``, ``gradient-clustering`` or ``sae`` (see :class:`DecompositionManifest`)."""
        return self.meta.method

    def array(self, name: str) -> np.ndarray:
        """A method's extra array (``labels`` of a clustering)."""
        return self._array(name)

    def __repr__(self) -> str:
        return f"Decomposition({str(self.path)!r}, m={self.meta.num_examples}, C={self.meta.n_components})"


def open_decomposition(path: str | os.PathLike) -> Decomposition:
    """Open the decomposition directory ``path`` (see :class:`Decomposition`)."""
    return Decomposition(path)


def prepare_decomposition_dir(path: str | os.PathLike, *, overwrite: bool, inputs=()) -> Path:
    """Create the output directory of a decomposition, refusing to clobber anything unasked.

    An interrupted run's directory (a checkpoint, no manifest) is kept as it is: a resumed run
    continues from its checkpoint, a fresh run replaces the checkpoint as it goes. A finished
    decomposition is replaced only with ``overwrite``; a directory holding anything else, never;
    nor one that is, contains or lies inside one of the run's ``inputs`` (its store).
    """
    def keep(p: Path) -> bool:  # an interrupted run: a checkpoint and no manifest yet
        return (p / CHECKPOINT_DIR).is_dir() and not (p / MANIFEST).exists()

    return _files.prepare_output_dir(
        path, what="decomposition", overwrite=overwrite, resume=keep, exists=StoreExistsError, inputs=inputs,
        is_ours=lambda p: _files.manifest_format(p) == FORMAT_NAME
        or (not (p / MANIFEST).exists() and (p / CHECKPOINT_DIR).is_dir()))


def write_decomposition(path: Path, *, W: np.ndarray, H: np.ndarray, losses: np.ndarray,
                        manifest: DecompositionManifest, extra: dict[str, np.ndarray] | None = None) -> None:
    """Write the arrays (and a method's ``extra`` ones, e.g. a clustering's ``labels``), then the
    manifest (last: a directory with a manifest is complete), then drop the checkpoint."""
    extra = extra or {}
    if set(extra) & set(ARRAYS):
        raise ValueError(f"extra arrays may not be named {ARRAYS}")
    for name, array in [*zip(ARRAYS, (W, H, losses)), *extra.items()]:
        save_array(path / f"{name}.npy", array)
    _files.atomic_write_json(path / MANIFEST, manifest.to_dict())
    shutil.rmtree(path / CHECKPOINT_DIR, ignore_errors=True)
