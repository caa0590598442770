"""NPEFF, Algorithm 1 of the paper (with appendix C), as one chunk step and one small-state step.

Every iteration is one pass over the store. With ``H`` ``[C, d]``, ``HH^T`` and
``M = HH^T * HH^T`` fixed for the iteration, each chunk ``(G_c [k, r, d], W_c [k, C])`` gives::

    B_c = G_c H^T                         [k, r, C]          coefficient_numerator
    N_c = sum_r B_c^2                     [k, C]
    W_c <- W_c * N_c / (W_c M)            (joint steps only) coefficient_update
    T2_c = -4 (W_c * B_c)^T G_c           [C, d]             chunk_step -> ChunkPartials
    (W^T W)_c = W_c^T W_c                 [C, C]
    loss_c = sum_i ||G_i G_i^T||^2 - 2 sum W_c * N_c + sum (W_c M) * W_c

and then, with the partials summed over the chunks (small state, on the driver)::

    T1 = 4 ((W^T W) * HH^T) H,   H <- H - lr (T1 + T2)      h_update

No ``n x n`` matrix ever exists. At the end, rows of H are scaled to unit norm and W's columns by
the squared norms (normalise), which leaves every reconstruction ``sum_k W_ik h_k h_k^T`` as it is.
"""

from __future__ import annotations

import dataclasses

import torch

from npeff.ops.stream.runner import PieceState

#: W and the temporaries of its update, as a multiple of W's bytes (taken off the memory budget)
W_FOOTPRINT = 3

#: floor of the W update's denominator (an example orthogonal to every component keeps W = 0)
_TINY = 1e-30


@dataclasses.dataclass
class ChunkPartials:
    """One chunk's (or a sum of chunks') share of an iteration.

    Attributes:
        t2: ``[C, d]``, ``-4 (W_c * B_c)^T G_c``.
        wtw: ``[C, C]``, ``W_c^T W_c``.
        loss: ``[]`` float64, the chunk's share of the loss.
    """

    t2: torch.Tensor
    wtw: torch.Tensor
    loss: torch.Tensor

    def add_(self, other: ChunkPartials) -> ChunkPartials:
        """Add ``other`` into these tensors (they are the pass's own temporaries); returns self."""
        self.t2.add_(other.t2)
        self.wtw.add_(other.wtw)
        self.loss.add_(other.loss)
        return self

    def to(self, device: torch.device | str) -> ChunkPartials:
        return ChunkPartials(self.t2.to(device), self.wtw.to(device), self.loss.to(device))


def coefficient_numerator(g: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``B = G H^T`` ``[k, r, C]`` and ``N = sum_r B^2`` ``[k, C]`` (appendix C.1).

    Notes:
        Memory: ``B`` is ``k r C`` values (for a 32 MiB piece at C = 512, r = 2, d = 16384: 2 MiB).
    """
    k, r, d = g.shape
    b = (g.reshape(k * r, d) @ h.T).reshape(k, r, -1)
    return b, (b * b).sum(dim=1)


def coefficient_update(w: torch.Tensor, n: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Multiplicative update ``W <- W * N / (W M)`` with ``M = (HH^T) * (HH^T)`` (appendix C.1).

    Coefficients that fall below the dtype's smallest normal number are set to zero: the updates
    drive unused coefficients towards zero, and subnormal floats make every later product with W
    up to a hundred times slower on CPUs (flush-to-zero, done here so that it holds on every thread
    and every worker).
    """
    w = w * n / (w @ m).clamp_min(_TINY)
    return w.masked_fill_(w < torch.finfo(w.dtype).tiny, 0.0)


def pef_self_products(g: torch.Tensor) -> torch.Tensor:
    """``sum_i ||G_i^T G_i||_F^2`` of a chunk ``[k, r, d]``, via the small ``G_i G_i^T`` ``[k, r, r]``
    (the loss's constant term)."""
    gram = g @ g.transpose(1, 2)
    return (gram * gram).sum()


def gram_terms(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``HH^T`` and ``M = HH^T * HH^T``, both ``[C, C]``, fixed for one iteration."""
    hht = h @ h.T
    return hht, hht * hht


def chunk_step(state: PieceState, h: torch.Tensor, m: torch.Tensor, joint: bool) -> ChunkPartials:
    """One chunk's share of an iteration (the chunk step of a pass).

    Reads ``state.g`` ``[k, r, d]`` and the rows ``W`` ``[k, C]`` and ``mask`` ``[k]`` (1 for
    examples with a PEF); in joint steps writes the updated W rows in place (examples without a
    PEF stay at zero). The loss's constant term, and whether every example of the piece has a PEF,
    are computed on the first pass and kept in ``state.cache``.
    """
    g, w, mask, cache = state.g, state.rows["W"], state.rows["mask"], state.cache
    if "self_products" not in cache:
        cache["self_products"] = pef_self_products(g)
    if "all_ok" not in cache:  # the mask is fixed for a run: checked once (a sync on a GPU)
        cache["all_ok"] = bool(mask.all())
    b, n = coefficient_numerator(g, h)
    if joint:
        update = coefficient_update(w, n, m)
        if cache["all_ok"]:
            w.copy_(update)
        else:
            torch.mul(update, mask[:, None], out=w)
    k, r, d = g.shape
    # B is the step's own temporary: scaled in place by -4 W (the factor, a power of two, is exact;
    # it scales the small [k, r, C] operand, not the [C, d] result)
    t2 = b.mul_((-4.0 * w)[:, None, :]).reshape(k * r, -1).T @ g.reshape(k * r, d)
    wtw = w.T @ w
    # sum_i W_i M W_i^T = sum(M * W^T W): from the [C, C] W^T W, not a [k, C] product W M
    loss = cache["self_products"] - 2.0 * (w * n).sum() + (m * wtw).sum()
    return ChunkPartials(t2, wtw, loss.double())


def h_update(h: torch.Tensor, partials: ChunkPartials, hht: torch.Tensor, lr: float) -> torch.Tensor:
    """``H - lr (T1 + T2)`` with ``T1 = 4 ((W^T W) * HH^T) H`` and ``T2`` summed over the chunks."""
    t1 = 4.0 * (partials.wtw * hht) @ h
    return h - lr * (t1 + partials.t2)


def fit_step(state: PieceState, h: torch.Tensor, m: torch.Tensor) -> None:
    """The chunk step of coefficient fitting: W rows updated in place, H fixed, no partial sums."""
    _, n = coefficient_numerator(state.g, h)
    state.rows["W"].copy_(coefficient_update(state.rows["W"], n, m))


def initial_state(n_components: int, num_examples: int, dim: int, mask: torch.Tensor, seed: int):
    """``W`` ``[m, C]`` ~ U[0, 1] (zero for examples without a PEF) and ``H`` ``[C, d]`` ~
    N(0, 2 / (C d)), both float64, from one generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    w = torch.rand(num_examples, n_components, generator=generator, dtype=torch.float64)
    h = torch.randn(n_components, dim, generator=generator, dtype=torch.float64)
    h *= 2 ** 0.5 / (n_components * dim) ** 0.5
    return w * mask.cpu().double()[:, None], h


def normalise(w: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of H scaled to unit norm, W's columns by their squared norms (zero rows stay)."""
    norms = h.norm(dim=1)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    return w * (safe ** 2)[None, :].to(w), h / safe[:, None]
