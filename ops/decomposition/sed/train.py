"""Sparse eigendecomposition of divergence gradients (``npeff sed``), trained on minibatches
streamed from a ``divergence`` store.

For the divergence gradients ``g`` ``[d]`` of a minibatch ``X`` (stored as computed, then scaled by
one constant, ``1 / sqrt(mean_x ||g_x||²)`` over the store, so that ``lr`` and ``λ`` mean the same
on any model: relative sizes, which say how far each example's output is from the baseline's, are
kept) and directions U ``[K, d]``, each step of Adam lowers::

    L(U) = mean_{x in X} ( ||g_x - (g_x Uᵀ) U||² + λ ||g_x Uᵀ||₁ )

the draft's reconstruction loss (written there with a stray minus sign: it is minimised, so it
enters positively) plus its L1 penalty on the codes, both averaged over the batch rather than
summed (so that ``lr`` and ``λ`` do not depend on the batch size). U is not constrained: the
reconstruction term alone is lowest for orthonormal rows spanning the gradients, and the penalty
trades that against codes with few non-zeros per example.

The result is a decomposition directory (``method`` = ``sed``): ``H`` ``[K, d]`` = U as learned,
``W`` ``[m, K]`` = ``|g_x Uᵀ|`` of every (scaled) example (a final pass), so the analysis commands and
``npeff perturb`` (U lives in the store's space, like NPEFF's H) read it as they read NPEFF's.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from npeff._config import resolve_config
from npeff.errors import InvalidArgumentError
from npeff.ops.decomposition.sed.config import SedConfig
from npeff.ops.decomposition.sed.directions import FullDirections, LowRankDirections
from npeff.ops.stream import check_device, parse_bytes, require_finalized, usable_mask
from npeff.ops.stream.rows import Minibatches, map_rows
from npeff.store import PefStore, open_store
from npeff.store.decomposition import (Decomposition, DecompositionManifest, open_decomposition,
                                       prepare_decomposition_dir, write_decomposition)
from npeff.store.provenance import new_provenance, now_iso

METHOD = "sed"
STORE_KIND = "divergence"
OBJECTIVE = "mean over the batch of ||g - (g U^T) U||^2 + l1 * ||g U^T||_1"


def sed_loss(g: torch.Tensor, u: torch.Tensor, l1: float, scale: float = 1.0
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, reconstruction, sparsity)`` of rows ``scale * g`` (``g`` ``[B, d]``) under directions
    ``u`` ``[K, d]``: the batch means of ``||g - g Uᵀ U||²`` and ``||g Uᵀ||₁``, and ``loss =
    reconstruction + l1 * sparsity`` (the scale is applied to the codes, not to a copy of ``g``).

    The reconstruction error is expanded through the codes ``c = g Uᵀ`` and the Gram matrix ``U Uᵀ``,
    ``||g||² - 2 ||c||² + c (U Uᵀ) cᵀ``, so no ``[B, d]`` residual is formed: a step costs the GEMM
    ``g Uᵀ`` and, backward, ``cᵀ g`` (``B × d × K`` each) plus ``K × K × d`` for the Gram matrix,
    as an NPEFF step costs per example.

    Memory: the ``[B, K]`` codes and the ``[K, K]`` Gram matrix (plus their gradients)."""
    codes = (g @ u.T) * scale
    gram = u @ u.T
    squares = torch.linalg.vector_norm(g, dim=1) ** 2 * scale ** 2
    reconstruction = (squares - 2 * (codes * codes).sum(dim=1) + ((codes @ gram) * codes).sum(dim=1)).mean()
    sparsity = codes.abs().sum(dim=1).mean()
    return reconstruction + l1 * sparsity, reconstruction, sparsity


def check_divergence_store(store: PefStore) -> None:
    """Refuse a store that is not of divergence gradients."""
    if store.config.kind != STORE_KIND:
        raise InvalidArgumentError(f"{store.path} is a store of kind {store.config.kind!r}; npeff sed decomposes "
                                   f"divergence gradients (kind 'divergence', built with npeff build "
                                   f"--divergence-gradient)")


def gradient_scale(store: PefStore, *, mask: np.ndarray, device: str, dtype: torch.dtype,
                   memory_budget: int | None) -> float:
    """``1 / sqrt(mean ||g||²)`` over the usable examples (one pass over the store)."""
    squares = map_rows(store, lambda g: (g.double() ** 2).sum(dim=1, keepdim=True), 1, mask=mask, device=device,
                       dtype=dtype, memory_budget=memory_budget, out_dtype=np.float64)
    mean = float(squares[mask].mean())
    if not mean > 0 or not np.isfinite(mean):
        raise InvalidArgumentError(f"the divergence gradients of {store.path} are all zero or not finite "
                                   f"(mean squared norm {mean:g}); there is nothing to decompose")
    return mean ** -0.5


def check_directions(store: PefStore, config: SedConfig) -> None:
    """Refuse low-rank directions (``config.rank``) on a store whose rows have no tensor shapes."""
    if config.rank is not None and (store.config.projection["kind"] != "none" or store.config.parameter_layout is None):
        raise InvalidArgumentError(f"--rank needs an unprojected store with its parameter layout (npeff build "
                                   f"--projection none), where rows keep the parameter tensors' shapes; the rows of "
                                   f"{store.path} are projected ({store.config.projection['kind']}), so its "
                                   f"directions have no tensor structure to factor")


def make_directions(store: PefStore, config: SedConfig, generator: torch.Generator, dtype: torch.dtype,
                    sample: torch.Tensor | None = None):
    """The directions module: full rows (started from ``sample``'s rows), or low-rank ones
    (``config.rank``) on an unprojected store."""
    check_directions(store, config)
    if config.rank is None:
        return FullDirections(config.n_components, store.dim, generator, dtype, sample)
    return LowRankDirections(list(store.config.parameter_layout.shapes), config.n_components, config.rank,
                             generator, dtype)


def train_directions(store: PefStore, config: SedConfig, scale: float, batch_size: int, *, mask: np.ndarray,
                     device: str, dtype: torch.dtype, memory_budget: int | None, progress: bool = False):
    """``(directions, initial U [K, d], history [3, steps], seconds)``: Adam on :func:`sed_loss` over minibatches of the
    scaled gradients; the first minibatch also seeds the full directions (residual sampling)."""
    generator = torch.Generator().manual_seed(config.seed)
    stream = iter(Minibatches(store, batch_size, generator, mask=mask, device=device, dtype=dtype,
                              memory_budget=memory_budget))
    batch = next(stream)
    directions = make_directions(store, config, generator, dtype, sample=batch).to(device)
    with torch.no_grad():
        initial = directions().to("cpu").numpy().copy()
    optimiser = torch.optim.Adam(directions.parameters(), lr=config.lr)
    history = np.zeros((3, config.steps))
    from npeff.progress import progress_bar

    began = time.perf_counter()
    for step in progress_bar(range(config.steps), desc="sed", unit="step", enabled=progress):
        if step:
            batch = next(stream)
        loss, reconstruction, sparsity = sed_loss(batch, directions(), config.l1, scale)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        history[:, step] = [float(loss.detach()), float(reconstruction.detach()), float(sparsity.detach())]
        if not np.isfinite(history[:, step]).all():
            raise InvalidArgumentError(f"the loss became non-finite at step {step}; lower --lr (now {config.lr:g})")
    seconds = time.perf_counter() - began
    return directions, initial, history, seconds


def sparse_eigendecomposition(store: PefStore | str | Path, n_components: int | None = None, *,
                              config: SedConfig | None = None, out: str | Path | None = None, device: str = "cpu",
                              memory_budget: int | str | None = None, overwrite: bool = False,
                              progress: bool = False, command: str | None = None, **overrides
                              ) -> Decomposition | dict:
    """Learn K sparse directions of the divergence gradients of a store (see the module docstring).

    Args:
        store: a ``divergence`` store (``npeff build --divergence-gradient``) or its path.
        n_components: K (or give ``config``); other :class:`SedConfig` fields as keywords.
        out: the output directory; without it a dict with ``W``, ``H``, ``losses``,
            ``reconstruction``, ``sparsity`` (per step), ``steps_per_second``, ``scale`` and the
            ``initial`` directions is returned.
        memory_budget: bytes of the store kept resident (None: all); the rest streams every epoch,
            in the same minibatch order.

    Notes:
        Memory: U ``[K, d]`` with its gradient and Adam's two moments, a batch ``[B, d]`` with its
        codes ``[B, K]``, the resident part of the store, and ``W`` ``[m, K]`` float32 at the end.
    """
    store = store if isinstance(store, PefStore) else open_store(store)
    require_finalized(store)
    check_divergence_store(store)
    check_device(device)
    config = resolve_config(SedConfig, config, "n_components", n_components, overrides)
    budget = parse_bytes(memory_budget)
    mask = usable_mask(store)
    usable = int(mask.sum())
    dtype = getattr(torch, config.dtype)
    check_directions(store, config)
    out_path = Path(out) if out is not None else None
    if out_path is not None and out_path.exists() and not overwrite:
        prepare_decomposition_dir(out_path, overwrite=False, inputs=(store.location.local,))  # refuses an existing output now, not after training
    scale = gradient_scale(store, mask=mask, device=device, dtype=dtype, memory_budget=budget)
    batch_size = min(config.batch_size, usable)
    directions, initial, history, seconds = train_directions(store, config, scale, batch_size, mask=mask,
                                                             device=device, dtype=dtype, memory_budget=budget,
                                                             progress=progress)
    with torch.no_grad():
        u = directions().detach()
    w = map_rows(store, lambda g: (g @ u.T).abs() * scale, config.n_components, mask=mask, device=device,
                 dtype=dtype, memory_budget=budget)
    h = u.to("cpu", torch.float32).numpy()
    result = {"W": w, "H": h, "losses": history[0], "reconstruction": history[1], "sparsity": history[2],
              "steps_per_second": config.steps / seconds, "scale": scale, "initial": initial}
    if out_path is None:
        return result
    prepare_decomposition_dir(out_path, overwrite=overwrite, inputs=(store.location.local,))  # only now: a failed run replaces nothing
    tail = slice(max(0, config.steps - max(1, config.steps // 100)), None)  # the last 1% of the steps
    manifest = DecompositionManifest(
        method=METHOD, config=config.to_dict(), n_components=config.n_components, num_examples=store.num_examples,
        dim=store.dim, store=store.url, store_fingerprint=store.fingerprint, store_content_id=store.content_id,
        memory_budget=budget, device=device, final_loss=float(history[0, -1]), median_step_seconds=None,
        details={"objective": OBJECTIVE, "scale": scale, "batch_size": batch_size, "steps_per_second": result["steps_per_second"],
                 "reconstruction": float(history[1, tail].mean()), "sparsity": float(history[2, tail].mean()),
                 "directions": "full" if config.rank is None else f"low-rank (r = {config.rank} per tensor)",
                 "initialisation": ("rows of the first minibatch by residual sampling, scaled to unit norm"
                                    if config.rank is None else "unit directions from seeded normal factors"),
                 "losses": "each step's batch loss; reconstruction and sparsity: their means over the last 1% of steps",
                 "scaling": "every gradient g is multiplied by scale = 1 / sqrt(mean ||g||^2) over the usable examples",
                 "H": "the directions U as learned (not normalised)", "W": "|g U^T|, the codes' magnitudes"},
        provenance=dict(new_provenance(command), finalized=now_iso()))
    write_decomposition(out_path, W=w, H=h, losses=history[0], manifest=manifest,
                        extra={"reconstruction": history[1], "sparsity": history[2]})
    return open_decomposition(out_path)


__all__ = ["OBJECTIVE", "check_divergence_store", "sed_loss", "sparse_eigendecomposition"]
