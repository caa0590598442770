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


def _check_claimed_size(path: Path) -> None:
    """Refuse a ``.npy`` whose header claims more bytes than the file holds, before numpy
    allocates what the header claims (a header saying 10^12 rows would ask for terabytes)."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _fortran, dtype = read_header(handle)
        offset = handle.tell()
    if dtype.hasobject:
        raise ValueError("it holds Python objects")
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if offset + claimed > path.stat().st_size:
        raise ValueError(f"its header claims shape {list(shape)} ({claimed:,} bytes), "
                         f"the file holds {path.stat().st_size - offset:,}")


def load_array(path: Path, *, corrupt: type[CorruptError] = StoreCorruptError) -> np.ndarray:
    """The array in ``path``; ``corrupt`` (a :class:`CorruptError`) when missing or unreadable."""
    if not path.is_file():
        raise corrupt(f"{path} is missing")
    try:
        _check_claimed_size(path)
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise corrupt(f"{path} is not a readable .npy array: {error}") from None
