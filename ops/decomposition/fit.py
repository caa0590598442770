"""Coefficient fitting: W for the examples of a store, with a decomposition's components H held fixed
(the W-only multiplicative updates of Algorithm 1), one pass over the store per step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from npeff.errors import DecompositionError, IncompatibleStoresError, InvalidArgumentError
from npeff.ops.decomposition import algorithm
from npeff.ops.decomposition.config import COMPUTE_DTYPES
from npeff.ops.decomposition.normalization import explain_non_finite, plan_normalization
from npeff.ops.stream import LocalRunner, check_device, ok_mask, parse_bytes, require_finalized
from npeff.store import PefStore, open_store
from npeff.store.coefficients import CoefficientsManifest, check_coefficients_dir, write_coefficients
from npeff.store.decomposition import Decomposition, open_decomposition
from npeff.store.provenance import new_provenance, now_iso


def fit_coefficients(decomposition: Decomposition | str | Path, store: PefStore | str | Path, *,
                     out: str | Path | None = None, steps: int = 100, seed: int = 0, device: str = "cpu",
                     dtype: str = "float32", memory_budget: int | str | None = None, overwrite: bool = False,
                     normalize: bool = True, progress: bool = False, command: str | None = None) -> np.ndarray:
    """Fit W for ``store`` with the decomposition's H fixed (W-only multiplicative updates).

    The store must share the decomposition's projection and parameter layout (its fingerprint).
    H must be finite, ``[C, d]``; ``out`` is checked before any work. With ``normalize`` (the
    default), PEFs of a store that does not record them as normalised are scaled to unit
    ``||G_i^T G_i||_F`` as they are read (their norms written as ``pef_norms.npy``), as
    :func:`~npeff.ops.decomposition.driver.decompose` does.

    Returns:
        The coefficients ``[m, C]`` (also written to ``out`` as ``W.npy`` with a manifest, see
        :mod:`npeff.store.coefficients`). Examples without a PEF get zero rows.

    Raises:
        DecompositionError: H holds NaN or inf, or the coefficients came out non-finite (with
            the cause the data show: non-finite or huge input values).

    Notes:
        Memory: W ``[m, C]`` and H ``[C, d]`` plus the resident chunks within ``memory_budget``.
    """
    decomposition = decomposition if isinstance(decomposition, Decomposition) else open_decomposition(decomposition)
    store = store if isinstance(store, PefStore) else open_store(store)
    require_finalized(store)
    check_device(device)
    h_stored = _checked_components(decomposition)
    expected = decomposition.meta.store_fingerprint
    if store.fingerprint != expected:
        raise IncompatibleStoresError(
            f"{store.path} (fingerprint {store.fingerprint}) does not share the projection and parameter "
            f"layout of the decomposition's store (fingerprint {expected})")
    if store.dim != h_stored.shape[1]:
        raise IncompatibleStoresError(f"store dim {store.dim} differs from the decomposition's {h_stored.shape[1]}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidArgumentError(f"steps must be an integer >= 1, got {steps!r}")
    if dtype not in COMPUTE_DTYPES:
        raise InvalidArgumentError(f"dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {dtype!r}")
    if out is not None:
        check_coefficients_dir(out, overwrite=overwrite, inputs=(decomposition.path, store.location.local))
    torch_dtype = getattr(torch, dtype)
    h = torch.from_numpy(h_stored).to(device=device, dtype=torch_dtype)
    c = h.shape[0]
    _, m_matrix = algorithm.gram_terms(h)
    mask = ok_mask(store, device, torch_dtype)
    normalization = plan_normalization(store, normalize, mask=mask, device=device)
    generator = torch.Generator().manual_seed(seed)
    w = torch.rand(store.num_examples, c, generator=generator, dtype=torch.float64).to(device, torch_dtype)
    w *= mask[:, None]
    per_value = torch.empty((), dtype=torch_dtype).element_size()
    runner = LocalRunner(store, device=device, dtype=torch_dtype, memory_budget=parse_bytes(memory_budget),
                         reserved_bytes=algorithm.W_FOOTPRINT * store.num_examples * c * per_value,
                         scale=normalization.factors)
    from npeff.progress import progress_bar

    try:
        runner.start({"W": w})
        for _ in progress_bar(range(steps), desc="fit", unit="step", enabled=progress):
            runner.run_pass(algorithm.fit_step, h, m_matrix)
        coefficients = runner.gather("W").cpu().numpy()
    finally:
        runner.close()
    bad = np.flatnonzero(~(np.isfinite(coefficients) & (coefficients >= 0)).all(axis=1))
    if len(bad):
        cause, _ = explain_non_finite(store, normalization, mask, torch_dtype, device=device)
        raise DecompositionError(
            f"fitting gave non-finite or negative coefficients for {len(bad)} of {store.num_examples} examples "
            f"(first: example {bad[0]}); nothing was written" + (f": {cause}" if cause else
                                                                 "; try --dtype float64"))
    if out is not None:
        write_coefficients(out, coefficients, CoefficientsManifest(
            decomposition=str(Path(decomposition.path).resolve()), store=store.url, store_fingerprint=store.fingerprint,
            store_content_id=store.content_id, steps=steps, num_examples=store.num_examples, n_components=c,
            provenance=dict(new_provenance(command), finalized=now_iso()), normalization=normalization.record()),
            overwrite=overwrite, extra=None if normalization.norms is None else {"pef_norms": normalization.norms},
            inputs=(decomposition.path, store.location.local))
    return coefficients


def _checked_components(decomposition: Decomposition) -> np.ndarray:
    """The decomposition's H ``[C, d]``, refused unless it is a finite float matrix with C >= 1."""
    h = decomposition.H
    if h.ndim != 2 or h.shape[0] < 1 or h.shape[1] < 1 or not np.issubdtype(h.dtype, np.floating):
        raise InvalidArgumentError(f"the components H of {decomposition.path} must be a float matrix [C, d], "
                                   f"got {h.dtype} of shape {list(h.shape)}")
    if h.shape[0] != decomposition.meta.n_components:
        raise InvalidArgumentError(f"the components H of {decomposition.path} are {h.shape[0]} rows, but its "
                                   f"manifest says {decomposition.meta.n_components} components")
    bad = np.flatnonzero(~np.isfinite(h).all(axis=1))
    if len(bad):
        raise DecompositionError(f"the components H of {decomposition.path} hold NaN or inf (in {len(bad)} of "
                                 f"{h.shape[0]} components, first component {bad[0]}); fitting needs finite H: "
                                 f"decompose again")
    return h
