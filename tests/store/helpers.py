"""Deterministic PEF data for store tests (the same in the test process and in subprocesses)."""

import numpy as np


def pef_rows(start: int, stop: int, rank: int, dim: int) -> np.ndarray:
    """float32 ``[stop - start, rank, dim]``: example i's rows are a pure function of i."""
    i = np.arange(start, stop, dtype=np.float64)[:, None, None]
    r = np.arange(rank, dtype=np.float64)[None, :, None]
    j = np.arange(dim, dtype=np.float64)[None, None, :]
    return np.sin(0.37 * i + 1.3 * r + 0.11 * j * (r + 1)).astype(np.float32)


def example_records(start: int, stop: int) -> list[dict]:
    return [{"text": f"example {i}", "label": i % 3, "source_id": f"src-{i}",
             "probs": [0.25, 0.75], "pef_norm": 1.0 + i} for i in range(start, stop)]
