"""A TopK sparse autoencoder on an activation store (Gao et al. 2024, as the NPEFF paper trains it,
appendix G), with minibatches streamed from the store.

For a unit-normalised activation ``x`` ``[d]``::

    z = ReLU(TopK_k(W_enc (x - b_dec) + b_enc))     [C]   the latent activations
    x̂ = W_dec z + b_dec                             [d]   loss = mean ||x - x̂||²

Rows of ``W_enc`` ``[C, d]`` and columns of ``W_dec`` ``[d, C]`` are kept at unit L2 norm: their
gradients are projected onto the tangent space of that manifold (``g - (g·w) w`` per row/column)
before Adam, and they are renormalised after every step; the decoder starts as the encoder's
transpose (appendix G). Batches come from :class:`npeff.ops.stream.rows.Minibatches`: pieces in a
seeded random order, shuffled within a buffer, the same batches whatever the memory budget keeps
resident (the rest is read again every epoch).

The result is a decomposition directory (``method`` = ``sae``): ``H`` ``[C, d]`` the decoder's
atoms, ``W`` ``[m, C]`` every example's latent activations (a final pass over the store), so the
analysis commands read it as they read NPEFF's.
"""

from __future__ import annotations

import time
from pathlib import Path
import numpy as np
import torch

from npeff._config import resolve_config
from npeff.errors import InvalidArgumentError
from npeff.ops.baselines.activations import check_activation_store
from npeff.ops.baselines.config import SaeConfig
from npeff.ops.stream import check_device, parse_bytes, require_finalized, usable_mask
from npeff.ops.stream.rows import Minibatches, map_rows
from npeff.store import PefStore, open_store
from npeff.store.decomposition import (Decomposition, DecompositionManifest, open_decomposition,
                                       prepare_decomposition_dir, write_decomposition)
from npeff.store.provenance import new_provenance, now_iso

METHOD = "sae"


class TopKSae(torch.nn.Module):
    """The autoencoder's parameters: ``W_enc`` ``[C, d]``, ``b_enc`` ``[C]``, ``W_dec`` ``[d, C]``, ``b_dec`` ``[d]``."""

    def __init__(self, d: int, n_latents: int, k: int, generator: torch.Generator, dtype=torch.float32):
        super().__init__()
        w = torch.randn(n_latents, d, generator=generator, dtype=torch.float64)
        w /= w.norm(dim=1, keepdim=True)
        self.k = k
        self.W_enc = torch.nn.Parameter(w.to(dtype))
        self.b_enc = torch.nn.Parameter(torch.zeros(n_latents, dtype=dtype))
        self.W_dec = torch.nn.Parameter(w.T.clone().to(dtype))  # the encoder's transpose (appendix G)
        self.b_dec = torch.nn.Parameter(torch.zeros(d, dtype=dtype))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` latent activations: the k largest pre-activations, through a ReLU, the rest 0."""
        pre = (x - self.b_dec) @ self.W_enc.T + self.b_enc
        values, indices = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter_(1, indices, torch.relu(values))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z @ self.W_dec.T + self.b_dec, z

    @torch.no_grad()
    def project_gradients(self) -> None:
        """Gradients of the unit-norm rows of ``W_enc`` and columns of ``W_dec`` onto their tangent spaces."""
        for weight, dim in ((self.W_enc, 1), (self.W_dec, 0)):
            if weight.grad is not None:
                weight.grad -= (weight.grad * weight).sum(dim=dim, keepdim=True) * weight

    @torch.no_grad()
    def renormalise(self) -> None:
        """Back onto the manifold after a step: unit encoder rows and decoder columns."""
        self.W_enc /= self.W_enc.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.W_dec /= self.W_dec.norm(dim=0, keepdim=True).clamp_min(1e-12)


def train_sae(store: PefStore | str | Path, n_latents: int | None = None, *, config: SaeConfig | None = None,
              out: str | Path | None = None, device: str = "cpu", memory_budget: int | str | None = None,
              overwrite: bool = False, progress: bool = False, command: str | None = None,
              **overrides) -> Decomposition | dict:
    """Train a TopK SAE on an activation store; the paper's SAE baseline.

    Args:
        store: an ``activation`` store (``npeff build --activations``) or its path.
        n_latents: C (or give ``config``); other :class:`SaeConfig` fields as keywords.
        out: the output directory; without it a dict with ``W``, ``H``, ``losses``, ``dead`` and the
            trained ``model`` is returned.

    Notes:
        Memory: the SAE ``2 C d`` (plus Adam's twice that), a batch and its ``[B, C]`` latents, the
        resident pieces and a buffer of at most two pieces; ``W`` ``[m, C]`` at the end.
    """
    store = store if isinstance(store, PefStore) else open_store(store)
    require_finalized(store)
    check_activation_store(store)
    check_device(device)
    config = resolve_config(SaeConfig, config, "n_latents", n_latents, overrides)
    mask = usable_mask(store)
    usable = int(mask.sum())
    if config.k > store.dim:
        raise InvalidArgumentError(f"k = {config.k} exceeds the activations' dimension {store.dim}")
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        prepare_decomposition_dir(out_path, overwrite=overwrite, inputs=(store.location.local,))
    dtype, batch_size = torch.float32, min(config.batch_size, usable)
    generator = torch.Generator().manual_seed(config.seed)
    model = TopKSae(store.dim, config.n_latents, config.k, generator).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    stream = iter(Minibatches(store, batch_size, generator, mask=mask, device=device, dtype=dtype,
                              memory_budget=parse_bytes(memory_budget)))
    losses, began = [], time.perf_counter()
    from npeff.progress import progress_bar

    for _ in progress_bar(range(config.steps), desc="sae", unit="step", enabled=progress):
        x = next(stream)
        reconstruction, _ = model(x)
        loss = ((reconstruction - x) ** 2).sum(dim=1).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        model.project_gradients()
        optimiser.step()
        model.renormalise()
        losses.append(float(loss.detach()))
    seconds = time.perf_counter() - began
    w = map_rows(store, model.encode, config.n_latents, mask=mask, device=device, dtype=dtype,
                 memory_budget=parse_bytes(memory_budget))
    dead = int((w.max(axis=0) <= 0).sum())
    h = model.W_dec.detach().T.cpu().numpy().astype(np.float32)
    result = {"W": w, "H": h, "losses": np.asarray(losses), "dead": dead, "model": model,
              "steps_per_second": config.steps / seconds}
    if out_path is None:
        return result
    manifest = DecompositionManifest(
        method=METHOD, config=config.to_dict(), n_components=config.n_latents, num_examples=store.num_examples,
        dim=store.dim, store=store.url, store_fingerprint=store.fingerprint, store_content_id=store.content_id,
        memory_budget=parse_bytes(memory_budget), device=device, final_loss=losses[-1],
        median_step_seconds=seconds / config.steps,
        details={"dead_latents": dead, "steps_per_second": result["steps_per_second"], "batch_size": batch_size,
                 "losses": "mean squared reconstruction error of each step's batch",
                 "H": "decoder atoms (unit columns of W_dec)", "W": "latent activations z of every example"},
        provenance=dict(new_provenance(command), finalized=now_iso()))
    write_decomposition(out_path, W=w, H=h, losses=result["losses"], manifest=manifest,
                        extra={"encoder": model.W_enc.detach().cpu().numpy(),
                               "encoder_bias": model.b_enc.detach().cpu().numpy(),
                               "decoder_bias": model.b_dec.detach().cpu().numpy()})
    return open_decomposition(out_path)
