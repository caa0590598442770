"""The eigenvalue decay of a store's PEFs (Figure 3 of the NPEFF paper).

For each example ``i`` with status ``ok``, the eigenvalues ``λ_1 >= ... >= λ_r`` of the ``r x r``
Gram matrix ``G_i G_i^T``: the non-zero eigenvalues of the PEF ``G_i^T G_i`` (``[n, n]``, never
formed), padded with zeros to the store's rank ``r``. They are normalised per example and
averaged over the examples:

- ``max`` (the default): ``λ_j / λ_1``, so the curve starts at 1 and shows how fast the
  eigenvalues fall off relative to the largest, as Figure 3 plots them;
- ``sum``: ``λ_j / Σ_k λ_k``, each eigenvalue's share of the trace ``||G_i||_F^2``;
- ``frobenius``: ``λ_j / sqrt(Σ_k λ_k^2)``, the eigenvalues of the PEF scaled to unit Frobenius
  norm (the normalisation of section 2.2 that the decomposition sees).

The paper says only "normalized eigenvalues"; whichever is chosen is recorded with the result.
Whatever the choice, ``cumulative_share[j]`` is the mean share of the trace held by the top
``j + 1`` eigenvalues: what an SVD rank reduction to ``j + 1`` rows (section 2.1.2) keeps.
Examples whose PEF is zero (no eigenvalue to divide by) are left out and counted.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from npeff.errors import InvalidArgumentError

if TYPE_CHECKING:  # torch is imported where the pass runs: the other analyses never load it
    import torch

NORMALIZATIONS = ("max", "sum", "frobenius")
DEFAULT_NORMALIZATION = "max"
SPECTRUM_DTYPES = ("float32", "float64")

#: rows of the partial sums of a pass: sum and sum of squares of the normalised eigenvalues,
#: sum of the cumulative trace shares; entry [3, 0] counts the examples summed
_SUM, _SQUARES, _CUMULATIVE, _COUNT = range(4)


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """The mean normalised eigenvalue decay of a store's PEFs.

    Attributes:
        store: the store's path or URL.
        normalize: ``max``, ``sum`` or ``frobenius`` (see the module's description).
        rank: ``r``, the number of eigenvalues per example.
        n_examples: examples in the store; ``n_used`` those averaged; ``n_not_ok`` those left out
            for their status; ``n_zero`` those left out because their PEF is zero.
        mean, std: ``[r]``, the mean and standard deviation over the examples used of the
            ``j``-th largest normalised eigenvalue.
        cumulative_share: ``[r]``, the mean share of the trace held by the top ``j + 1``.
        dtype: the dtype the Gram matrices and eigenvalues were computed in.
    """

    store: str
    normalize: str
    rank: int
    n_examples: int
    n_used: int
    n_not_ok: int
    n_zero: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    cumulative_share: tuple[float, ...]
    dtype: str = "float64"

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}


def gram_eigenvalues(g: torch.Tensor) -> torch.Tensor:
    """The eigenvalues of each ``G_i G_i^T``, largest first: ``[k, r]`` from ``g`` ``[k, r, d]``.

    Rounding can make the eigenvalues of a singular Gram matrix come out slightly negative: they
    are set to zero (a PEF is positive semi-definite).

    Notes:
        Memory: the ``[k, r, r]`` Gram matrices; time ``O(k r^2 d + k r^3)``.
    """
    import torch

    gram = g @ g.transpose(1, 2)
    return torch.linalg.eigvalsh(gram).flip(-1).clamp_min(0)


def normalised(eigenvalues: torch.Tensor, normalize: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``eigenvalues`` ``[k, r]`` (largest first) divided per row by their largest, sum or root sum
    of squares; and ``[k]`` booleans, False for rows that are all zero (left as zeros)."""
    if normalize == "max":
        scale = eigenvalues[:, 0]
    elif normalize == "sum":
        scale = eigenvalues.sum(dim=1)
    elif normalize == "frobenius":
        scale = eigenvalues.square().sum(dim=1).sqrt()
    else:
        raise InvalidArgumentError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    import torch

    nonzero = scale > 0
    safe = torch.where(nonzero, scale, torch.ones_like(scale))
    return eigenvalues / safe[:, None], nonzero


def spectrum_step(state, normalize: str) -> torch.Tensor:
    """The chunk step: partial sums ``[4, r]`` of one piece's normalised eigenvalues (examples
    whose status is ``ok`` and whose PEF is not zero), in the piece's dtype."""
    import torch

    eigenvalues = gram_eigenvalues(state.g)
    values, nonzero = normalised(eigenvalues, normalize)
    used = nonzero & (state.rows["ok"] > 0)
    weight = used.to(values.dtype)[:, None]
    totals = eigenvalues.sum(dim=1, keepdim=True)
    shares = eigenvalues.cumsum(dim=1) / torch.where(totals > 0, totals, torch.ones_like(totals))
    partial = torch.zeros((4, eigenvalues.shape[1]), dtype=values.dtype, device=values.device)
    partial[_SUM] = (weight * values).sum(dim=0)
    partial[_SQUARES] = (weight * values.square()).sum(dim=0)
    partial[_CUMULATIVE] = (weight * shares).sum(dim=0)
    partial[_COUNT, 0] = weight.sum()
    return partial


def pef_spectrum(store, *, normalize: str = DEFAULT_NORMALIZATION, device: str = "cpu", dtype: str = "float64",
                 memory_budget: int | str | None = 0, progress: bool = False) -> Spectrum:
    """The mean normalised eigenvalue decay of ``store``'s PEFs, in one pass over the store.

    Args:
        store: a PEF store (path, URL or handle).
        normalize: ``max``, ``sum`` or ``frobenius`` (see the module's description).
        device: where the Gram matrices and their eigenvalues are computed (``cpu``, ``cuda``).
        dtype: ``float64`` (default: eigenvalues a millionth of the largest stay accurate) or
            ``float32``.
        memory_budget: bytes of the store kept resident; 0 (default) streams every piece, which a
            single pass gains nothing from keeping.

    Returns:
        A :class:`Spectrum` (mean, standard deviation and cumulative trace share per eigenvalue).

    Raises:
        InvalidArgumentError: a bad ``normalize`` or ``dtype``, a store still being built, empty, or
            without any example of status ``ok`` and a non-zero PEF.

    Notes:
        Memory: the pieces in flight (32 MiB each, see :mod:`npeff.ops.stream`), their ``[k, r, r]``
        Gram matrices and an ``[m]`` mask; the store's tensor is never held whole.
    """
    import torch

    from npeff.ops.stream import LocalRunner, check_device, ok_mask, parse_bytes, require_finalized
    from npeff.progress import progress_bar
    from npeff.store import PefStore, open_store

    if normalize not in NORMALIZATIONS:
        raise InvalidArgumentError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    if dtype not in SPECTRUM_DTYPES:
        raise InvalidArgumentError(f"dtype must be one of {', '.join(SPECTRUM_DTYPES)}, got {dtype!r}")
    store = store if isinstance(store, PefStore) else open_store(store)
    require_finalized(store)
    check_device(device)
    torch_dtype = getattr(torch, dtype)
    mask = ok_mask(store, device, torch_dtype)
    runner = LocalRunner(store, device=device, dtype=torch_dtype, memory_budget=parse_bytes(memory_budget))
    bar = progress_bar(total=store.num_examples, desc="spectrum", unit="example", enabled=progress)

    def step(state, how):
        partial = spectrum_step(state, how)
        bar.update(state.piece.stop - state.piece.start)
        return partial

    try:
        runner.start({"ok": mask})
        sums = runner.run_pass(step, normalize).double().cpu().numpy()
    finally:
        bar.close()
        runner.close()
    n_not_ok = int(store.num_examples - mask.sum().item())
    used = int(round(sums[_COUNT, 0]))
    if used == 0:
        raise InvalidArgumentError(f"no example of {store.path} has status ok and a non-zero PEF: there is no "
                                   "spectrum to average")
    mean = sums[_SUM] / used
    variance = np.maximum(sums[_SQUARES] / used - mean ** 2, 0.0)
    return Spectrum(store=str(store.url), normalize=normalize, rank=int(store.rank), n_examples=int(store.num_examples),
                    n_used=used, n_not_ok=n_not_ok, n_zero=store.num_examples - n_not_ok - used,
                    mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in np.sqrt(variance)),
                    cumulative_share=tuple(float(v) for v in sums[_CUMULATIVE] / used), dtype=dtype)


__all__ = ["DEFAULT_NORMALIZATION", "NORMALIZATIONS", "Spectrum", "gram_eigenvalues", "normalised", "pef_spectrum",
           "spectrum_step"]
