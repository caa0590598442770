"""Small file helpers: staged atomic writes and content checksums."""

from __future__ import annotations

import json
import os
from pathlib import Path

import xxhash

CHECKSUM_ALGORITHM = "xxh3_128"
_READ_BLOCK = 1 << 24


def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``path.partial`` then ``os.replace`` it over ``path``: readers see old or new, never half."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        handle.write(data)
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(partial, path)


def atomic_write_json(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=1, sort_keys=False) + "\n").encode())


def file_checksum(path: Path) -> str:
    """``xxh3_128`` hex digest of a file's bytes (streamed in 16 MiB blocks)."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while block := handle.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def bytes_checksum(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def directory_size(path: Path) -> int:
    """Total bytes of the regular files below ``path``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total
