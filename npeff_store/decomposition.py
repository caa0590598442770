"""Decomposition directories: ``manifest.json``, ``W.npy`` ``[m, C]``, ``H.npy`` ``[C, d]`` and
``losses.npy`` (one loss per step), plus ``checkpoint/`` while a run is in progress.

Arrays are ``.npy`` files read with ``allow_pickle=False``: opening a decomposition executes no code.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from npeff.errors import StoreCorruptError, StoreExistsError, StoreNotFoundError
from npeff.store import _files

FORMAT_NAME = "npeff-decomposition"
FORMAT_VERSION = 1
CHECKPOINT = "checkpoint"


def save_array(path: Path, array: np.ndarray) -> None:
    """Write ``path`` atomically (``.partial`` then rename)."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
    os.replace(partial, path)


def load_array(path: Path) -> np.ndarray:
    if not path.is_file():
        raise StoreCorruptError(f"{path} is missing")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as error:
        raise StoreCorruptError(f"{path} is not a readable .npy array: {error}") from None


class Decomposition:
    """A finished decomposition: ``.W`` ``[m, C]``, ``.H`` ``[C, d]``, ``.losses``, ``.config``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not self.path.exists():
            raise StoreNotFoundError(f"no decomposition at {self.path}: the path does not exist")
        if not manifest_path.is_file():
            raise StoreNotFoundError(f"{self.path} is not an npeff decomposition: it has no manifest.json")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as error:
            raise StoreCorruptError(f"{manifest_path} is not valid JSON: {error}") from None
        if self.manifest.get("format") != FORMAT_NAME:
            raise StoreCorruptError(f"{manifest_path} is not an npeff decomposition manifest")
        self._W = self._H = self._losses = None

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    @property
    def W(self) -> np.ndarray:
        if self._W is None:
            self._W = load_array(self.path / "W.npy")
        return self._W

    @property
    def H(self) -> np.ndarray:
        if self._H is None:
            self._H = load_array(self.path / "H.npy")
        return self._H

    @property
    def losses(self) -> np.ndarray:
        if self._losses is None:
            self._losses = load_array(self.path / "losses.npy")
        return self._losses

    def __repr__(self) -> str:
        return f"Decomposition({str(self.path)!r}, m={self.manifest['num_examples']}, C={self.manifest['n_components']})"


def open_decomposition(path: str | os.PathLike) -> Decomposition:
    return Decomposition(path)


def prepare_output(path: Path, *, overwrite: bool, resume: bool) -> None:
    """Create the output directory, refusing to clobber anything unasked."""
    if path.exists() and not path.is_dir():
        raise StoreExistsError(f"{path} exists and is a file")
    if path.exists() and any(path.iterdir()):
        ours = (path / "manifest.json").is_file() or (path / CHECKPOINT).is_dir()
        if not ours:
            raise StoreExistsError(f"{path} exists, is not empty and is not an npeff decomposition; refusing")
        if overwrite:
            shutil.rmtree(path)
        elif resume and (path / CHECKPOINT).is_dir():
            return
        elif (path / "manifest.json").is_file():
            raise StoreExistsError(f"a decomposition already exists at {path}; pass --overwrite to replace it")
    path.mkdir(parents=True, exist_ok=True)


def write_decomposition(path: Path, *, W: np.ndarray, H: np.ndarray, losses: np.ndarray, manifest: dict) -> None:
    save_array(path / "W.npy", W)
    save_array(path / "H.npy", H)
    save_array(path / "losses.npy", losses)
    _files.atomic_write_json(path / "manifest.json", {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                                                      **manifest})
    shutil.rmtree(path / CHECKPOINT, ignore_errors=True)
