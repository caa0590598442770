"""``.npy`` arrays of decompositions and coefficients: written atomically, read without pickles (opening
an artifact executes no code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from npeff.errors import CorruptError, StoreCorruptError
from npeff.store import _files


def save_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` atomically (a temporary file, then a rename)."""
    with _files.atomic_write(path, "wb", fsync=False) as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def load_array(path: Path, *, corrupt: type[CorruptError] = StoreCorruptError) -> np.ndarray:
    """The array in ``path``; ``corrupt`` (a :class:`CorruptError`) when missing or unreadable."""
    if not path.is_file():
        raise corrupt(f"{path} is missing")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise corrupt(f"{path} is not a readable .npy array: {error}") from None
