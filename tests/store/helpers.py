"""Deterministic PEF data and small stores for store tests (the same in the test process and in
subprocesses)."""

from pathlib import Path

import numpy as np

from npeff.store import ParameterLayout, create_store

SSP = {"kind": "ssp-v1", "seed": 3}
LAYOUT = ParameterLayout.from_shapes([("w", (8, 4)), ("b", (4,))])


def pef_rows(start: int, stop: int, rank: int, dim: int) -> np.ndarray:
    """float32 ``[stop - start, rank, dim]``: example i's rows are a pure function of i."""
    i = np.arange(start, stop, dtype=np.float64)[:, None, None]
    r = np.arange(rank, dtype=np.float64)[None, :, None]
    j = np.arange(dim, dtype=np.float64)[None, None, :]
    return np.sin(0.37 * i + 1.3 * r + 0.11 * j * (r + 1)).astype(np.float32)


def example_records(start: int, stop: int) -> list[dict]:
    return [{"text": f"example {i}", "label": i % 3, "source_id": f"src-{i}",
             "probs": [0.25, 0.75], "pef_norm": 1.0 + i} for i in range(start, stop)]


def build(path, m, rank, dim, *, dtype="float32", shard=5, chunk=1, batches=(3, 7, 1), **kwargs):
    """A finalized store of examples ``[0, m)``, appended in batches of uneven sizes."""
    writer = create_store(path, rank=rank, dim=dim, projection=kwargs.pop("projection", SSP),
                          dtype=dtype, shard_examples=shard, chunk_examples=chunk, **kwargs)
    position, sizes = 0, list(batches)
    while position < m:
        step = min(sizes[0] if sizes else m, m - position)
        sizes = sizes[1:] + sizes[:1]
        writer.append(pef_rows(position, position + step, rank, dim),
                      example_records(position, position + step))
        position += step
    return writer.finalize()


def piece(path, start, stop, **kwargs):
    """A store of examples [start, stop), as one machine of a parallel build would write it."""
    options = {"projection": {"kind": "ssp-v1", "seed": 5}, "parameter_layout": LAYOUT, **kwargs}
    writer = create_store(path, rank=2, dim=32, shard_examples=4, chunk_examples=2, **options)
    writer.append(pef_rows(start, stop, 2, 32), example_records(start, stop))
    return writer.finalize()


def flip_byte(path: Path, offset: int, mask: int = 0x40) -> None:
    """Corrupt one byte of a file in place (``offset`` may be negative)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))
