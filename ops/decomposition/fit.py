"""Coefficient fitting: W for the examples of a store, with a decomposition's components H held fixed
(the W-only multiplicative updates of Algorithm 1), one pass over the store per step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from npeff.errors import IncompatibleStoresError, InvalidArgumentError
from npeff.ops.decomposition import algorithm
from npeff.ops.decomposition.config import COMPUTE_DTYPES
from npeff.ops.stream import LocalRunner, check_device, ok_mask, parse_bytes, require_finalized
from npeff.store import PefStore, open_store
from npeff.store.coefficients import CoefficientsManifest, write_coefficients
from npeff.store.decomposition import Decomposition, open_decomposition
from npeff.store.provenance import new_provenance, now_iso


def fit_coefficients(decomposition: Decomposition | str | Path, store: PefStore | str | Path, *,
                     out: str | Path | None = None, steps: int = 100, seed: int = 0, device: str = "cpu",
                     dtype: str = "float32", memory_budget: int | str | None = None, overwrite: bool = False,
                     progress: bool = False, command: str | None = None) -> np.ndarray:
    """Fit W for ``store`` with the decomposition's H fixed (W-only multiplicative updates).

    The store must share the decomposition's projection and parameter layout (its fingerprint).

    Returns:
        The coefficients ``[m, C]`` (also written to ``out`` as ``W.npy`` with a manifest, see
        :mod:`npeff.store.coefficients`). Examples without a PEF get zero rows.

    Notes:
        Memory: W ``[m, C]`` and H ``[C, d]`` plus the resident chunks within ``memory_budget``.
    """
    decomposition = decomposition if isinstance(decomposition, Decomposition) else open_decomposition(decomposition)
    store = store if isinstance(store, PefStore) else open_store(store)
    require_finalized(store)
    check_device(device)
    expected = decomposition.meta.store_fingerprint
    if store.fingerprint != expected:
        raise IncompatibleStoresError(
            f"{store.path} (fingerprint {store.fingerprint}) does not share the projection and parameter "
            f"layout of the decomposition's store (fingerprint {expected})")
    if store.dim != decomposition.H.shape[1]:
        raise IncompatibleStoresError(f"store dim {store.dim} differs from the decomposition's {decomposition.H.shape[1]}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidArgumentError(f"steps must be an integer >= 1, got {steps!r}")
    if dtype not in COMPUTE_DTYPES:
        raise InvalidArgumentError(f"dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {dtype!r}")
    torch_dtype = getattr(torch, dtype)
    h = torch.from_numpy(decomposition.H).to(device=device, dtype=torch_dtype)
    c = h.shape[0]
    _, m_matrix = algorithm.gram_terms(h)
    mask = ok_mask(store, device, torch_dtype)
    generator = torch.Generator().manual_seed(seed)
    w = torch.rand(store.num_examples, c, generator=generator, dtype=torch.float64).to(device, torch_dtype)
    w *= mask[:, None]
    per_value = torch.empty((), dtype=torch_dtype).element_size()
    runner = LocalRunner(store, device=device, dtype=torch_dtype, memory_budget=parse_bytes(memory_budget),
                         reserved_bytes=algorithm.W_FOOTPRINT * store.num_examples * c * per_value)
    from npeff.progress import progress_bar

    try:
        runner.start({"W": w})
        for _ in progress_bar(range(steps), desc="fit", unit="step", enabled=progress):
            runner.run_pass(algorithm.fit_step, h, m_matrix)
        coefficients = runner.gather("W").cpu().numpy()
    finally:
        runner.close()
    if out is not None:
        write_coefficients(out, coefficients, CoefficientsManifest(
            decomposition=str(decomposition.path), store=store.url, store_fingerprint=store.fingerprint,
            store_content_id=store.content_id, steps=steps, num_examples=store.num_examples, n_components=c,
            provenance=dict(new_provenance(command), finalized=now_iso())), overwrite=overwrite)
    return coefficients
