"""PEF rows from class log-probabilities (paper, sections 2.1, 2.1.1, 2.1.2 and 2.3).

For an example with class probabilities ``p`` the LRM-PEF ``G`` has rows ``sqrt(p_c) grad log p_c``
so that ``F = G^T G = sum_c p_c grad log p_c grad log p_c^T`` (equation 1). The rows are obtained as
gradients of scalar objectives:

* ``exact``: ``q_c = stop_grad(sqrt(p_c)) log p_c`` for every class (r = number of classes);
* ``eps``: ``A q`` with a seeded Gaussian ``A`` of ``R'`` rows (``E[A^T A] = I``): the expectation
  projection of section 2.1.1, ``G' = A G``;
* ``gradient``: ``log p_y'`` of the predicted class (G-NPEFF, rank 1).

Optionally the projected ``G`` is reduced to its top ``k`` singular directions (``G' = S_k V_k^T``,
section 2.1.2). Every PEF is scaled to unit Frobenius norm of ``F``; the norm before is returned.
"""

from __future__ import annotations

import dataclasses
import hashlib

import torch

from npeff.errors import InvalidArgumentError

PEF_KINDS = ("exact", "eps", "gradient")


def derived_seed(seed: int, name: str) -> int:
    """A sub-seed that is a pure function of ``(seed, name)`` (never ``seed + constant``)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PefSpec:
    """Which PEF rows to compute.

    Attributes:
        kind: ``exact`` (one row per class), ``eps`` (``eps_rows`` expectation-projection rows) or
            ``gradient`` (G-NPEFF: the gradient of the predicted class's log-probability).
        eps_rows: R', the number of rows of the expectation projection (``kind="eps"``).
        svd_rank: keep the top-k singular directions of the projected rows (optional).
        seed: seed of the expectation projection.
    """

    kind: str = "exact"
    eps_rows: int | None = None
    svd_rank: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in PEF_KINDS:
            raise InvalidArgumentError(f"PEF kind must be one of {PEF_KINDS}, got {self.kind!r}")
        if (self.kind == "eps") != (self.eps_rows is not None):
            raise InvalidArgumentError("eps_rows is given exactly when kind='eps' (use --eps R')")
        if self.eps_rows is not None and (not isinstance(self.eps_rows, int) or self.eps_rows < 1):
            raise InvalidArgumentError(f"--eps needs a positive number of rows, got {self.eps_rows!r}")
        if self.svd_rank is not None:
            if not isinstance(self.svd_rank, int) or self.svd_rank < 1:
                raise InvalidArgumentError(f"--svd-rank needs a positive integer, got {self.svd_rank!r}")
            if self.kind == "gradient":
                raise InvalidArgumentError("--svd-rank does not apply to --gradient (rank 1 already)")

    def rows(self, num_classes: int) -> int:
        """Rows computed per example (before any SVD reduction)."""
        return {"exact": num_classes, "eps": self.eps_rows, "gradient": 1}[self.kind]

    def stored_rank(self, num_classes: int) -> int:
        rows = self.rows(num_classes)
        return min(self.svd_rank, rows) if self.svd_rank is not None else rows

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def eps_matrix(spec: PefSpec, num_classes: int, *, dtype, device) -> torch.Tensor | None:
    """The seeded ``[R', C]`` Gaussian projection with entries ``N(0, 1/R')`` (``E[A^T A] = I``)."""
    if spec.kind != "eps":
        return None
    generator = torch.Generator().manual_seed(derived_seed(spec.seed, "eps"))
    a = torch.randn(spec.eps_rows, num_classes, generator=generator, dtype=torch.float64)
    return (a / spec.eps_rows ** 0.5).to(dtype=dtype, device=device)


def objective_rows(log_probs: torch.Tensor, spec: PefSpec, eps: torch.Tensor | None) -> torch.Tensor:
    """Scalar objectives ``[B, R]`` whose gradients are the PEF rows (see the module docstring)."""
    if spec.kind == "gradient":
        predicted = log_probs.detach().argmax(dim=1, keepdim=True)
        return log_probs.gather(1, predicted)
    q = torch.exp(0.5 * log_probs).detach() * log_probs
    if spec.kind == "exact":
        return q
    return q @ eps.T


def finish_pefs(g: torch.Tensor, spec: PefSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """SVD-reduce (optional) and normalise ``g`` ``[B, R, d]``.

    Returns ``(g', norms)`` with ``g'`` ``[B, stored_rank, d]`` such that ``||g'^T g'||_F = 1``
    and ``norms[b] = ||g_b^T g_b||_F`` before normalisation (zero PEFs stay zero).
    """
    if spec.svd_rank is not None and spec.svd_rank < g.shape[1]:
        _, s, vh = torch.linalg.svd(g, full_matrices=False)
        k = spec.svd_rank
        g = s[:, :k, None] * vh[:, :k, :]
    gram = g @ g.transpose(1, 2)
    norms = torch.linalg.matrix_norm(gram)
    scale = torch.where(norms > 0, norms.rsqrt(), torch.zeros_like(norms))
    return g * scale[:, None, None], norms
