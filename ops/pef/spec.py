"""PEF rows from class log-probabilities (paper, sections 2.1, 2.1.1, 2.1.2 and 2.3).

For an example with class probabilities ``p`` the LRM-PEF ``G`` has rows ``sqrt(p_c) grad log p_c``
so that ``F = G^T G = sum_c p_c grad log p_c grad log p_c^T`` (equation 1). The rows are obtained as
gradients of scalar objectives:

* ``exact``: ``q_c = stop_grad(sqrt(p_c)) log p_c``, one row per class (``exact_rows="classes"``,
  r = C), or by default the ``C - 1`` rows ``U^T q`` with ``U`` (per example, no gradient) an
  orthonormal basis of the complement of ``sqrt(p)``: since ``sum_c sqrt(p_c) a_c = grad sum_c p_c
  = 0`` for the rows ``a_c = sqrt(p_c) grad log p_c``, ``G^T U U^T G = G^T G``, the same Fisher in
  one row (and one backward pass) fewer (``exact_rows="complement"``);
* ``eps``: ``A q`` with a seeded Gaussian ``A`` of ``R'`` rows (``E[A^T A] = I``): the expectation
  projection of section 2.1.1, ``G' = A G``;
* ``gradient``: ``log p_y'`` of the predicted class (G-NPEFF, rank 1);
* ``divergence``: ``sum_y stop_grad(p_y log(K p_y)) log p_y``, whose gradient is that of
  ``KL(p || uniform)`` (``sum_y grad p_y = 0`` removes the other term): the divergence gradient
  that ``npeff sed`` decomposes (rank 1). A regression head's divergence row is
  :func:`regression_divergence_rows`.

Optionally the projected ``G`` is reduced to its top ``k`` singular directions (``G' = S_k V_k^T``,
section 2.1.2). Every PEF is scaled to unit Frobenius norm of ``F``; the norm before is returned.
Divergence gradients are not scaled (the draft decomposes them as they are).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import torch

from npeff.errors import InvalidArgumentError

PEF_KINDS = ("exact", "eps", "gradient", "divergence")
#: how ``exact`` PEFs are written: C - 1 rows spanning the complement of sqrt(p), or one per class
EXACT_ROWS = ("complement", "classes")
#: kinds of a single row per example (stores of these kinds have rank 1)
RANK_ONE_KINDS = ("gradient", "divergence")


def derived_seed(seed: int, name: str) -> int:
    """A sub-seed that is a pure function of ``(seed, name)`` (never ``seed + constant``)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PefSpec:
    """Which PEF rows to compute.

    Attributes:
        kind: ``exact`` (one row per class), ``eps`` (``eps_rows`` expectation-projection rows),
            ``gradient`` (G-NPEFF: the gradient of the predicted class's log-probability) or
            ``divergence`` (the gradient of the output's divergence from an uninformative baseline).
        eps_rows: R', the number of rows of the expectation projection (``kind="eps"``).
        svd_rank: keep the top-k singular directions of the projected rows (optional).
        seed: seed of the expectation projection.
        exact_rows: ``complement`` (default: ``C - 1`` rows with the same ``G^T G``) or
            ``classes`` (one row per class, the paper's form); ``kind="exact"`` only.
    """

    kind: str = "exact"
    eps_rows: int | None = None
    svd_rank: int | None = None
    seed: int = 0
    exact_rows: str = "complement"

    def __post_init__(self) -> None:
        if self.kind not in PEF_KINDS:
            raise InvalidArgumentError(f"PEF kind must be one of {PEF_KINDS}, got {self.kind!r}")
        if (self.kind == "eps") != (self.eps_rows is not None):
            raise InvalidArgumentError("eps_rows is given exactly when kind='eps' (use --eps R')")
        if self.eps_rows is not None and (not isinstance(self.eps_rows, int) or self.eps_rows < 1):
            raise InvalidArgumentError(f"--eps needs a positive number of rows, got {self.eps_rows!r}")
        if self.exact_rows not in EXACT_ROWS or (self.kind != "exact" and self.exact_rows != "complement"):
            raise InvalidArgumentError(f"exact_rows is one of {EXACT_ROWS}, for exact PEFs only; got {self.exact_rows!r} "
                                       f"with kind {self.kind!r}")
        if self.svd_rank is not None:
            if not isinstance(self.svd_rank, int) or self.svd_rank < 1:
                raise InvalidArgumentError(f"--svd-rank needs a positive integer, got {self.svd_rank!r}")
            if self.kind in RANK_ONE_KINDS:
                raise InvalidArgumentError(f"--svd-rank does not apply to --{self.kind}"
                                           f"{'-gradient' if self.kind == 'divergence' else ''} (rank 1 already)")

    def rows(self, num_classes: int) -> int:
        """Rows computed per example (before any SVD reduction)."""
        exact = num_classes - 1 if self.exact_rows == "complement" and num_classes > 1 else num_classes
        return {"exact": exact, "eps": self.eps_rows, "gradient": 1, "divergence": 1}[self.kind]

    @property
    def normalised(self) -> bool:
        """Whether rows are scaled to unit Frobenius norm of ``G^T G`` (all kinds but ``divergence``,
        whose gradients' sizes carry how far an example's output is from the baseline's)."""
        return self.kind != "divergence"

    @property
    def normalization(self) -> str:
        """The manifest's ``pef_spec.normalization``."""
        return "unit-frobenius" if self.normalised else "none"

    def stored_rank(self, num_classes: int) -> int:
        rows = self.rows(num_classes)
        return min(self.svd_rank, rows) if self.svd_rank is not None else rows

    def to_dict(self) -> dict:
        """The manifest's ``pef_spec.pef`` (``exact_rows`` only for exact PEFs, where it applies)."""
        data = dataclasses.asdict(self)
        if self.kind != "exact":
            del data["exact_rows"]
        return data


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
    if spec.kind == "divergence":
        return kl_to_uniform_rows(log_probs)
    root_p = torch.exp(0.5 * log_probs).detach()
    q = root_p * log_probs
    if spec.kind == "exact":
        if spec.exact_rows == "classes" or q.shape[1] < 2:
            return q
        return torch.einsum("bc,bck->bk", q, complement_basis(root_p).to(q.dtype))
    return q @ eps.T


def complement_basis(s: torch.Tensor) -> torch.Tensor:
    """``[B, C, C - 1]``: per row of ``s`` ``[B, C]`` (unit vectors with ``s_1 >= 0``, here
    ``sqrt(p)``), an orthonormal basis of the vectors orthogonal to it.

    The columns 2..C of the Householder reflection ``H = I - 2 v v^T / v^T v`` with ``v = s + e_1``,
    which maps ``s`` to ``-e_1``; ``v^T v = 2 (1 + s_1) >= 2``, so it is stable for any ``p``.
    Computed in float64.
    """
    s = s.to(torch.float64)
    s = s / torch.linalg.vector_norm(s, dim=1, keepdim=True)  # sum p = 1 up to rounding
    v = s.clone()
    v[:, 0] += 1
    identity = torch.eye(s.shape[1], dtype=torch.float64, device=s.device)
    h = identity - 2 * v[:, :, None] * v[:, None, :] / (v * v).sum(dim=1)[:, None, None]
    return h[:, :, 1:]


def kl_to_uniform_rows(log_probs: torch.Tensor) -> torch.Tensor:
    """``[B, 1]`` objectives whose gradients are ``grad KL(p || uniform)`` for ``p`` over ``K`` classes:
    ``sum_y stop_grad(p_y log(K p_y)) log p_y`` (classes with ``p_y = 0`` contribute nothing)."""
    p = log_probs.detach().exp()
    weight = torch.where(p > 0, p * (log_probs.detach() + math.log(log_probs.shape[1])), torch.zeros_like(p))
    return (weight * log_probs).sum(dim=1, keepdim=True)


def regression_divergence_rows(outputs: torch.Tensor) -> torch.Tensor:
    """``[B, 1]`` objectives of a regression head with outputs ``f`` ``[B, K]``: ``sum_i f_i``.

    Its gradient ``(grad f)^T 1`` is the draft's divergence gradient for regression, that of the
    squared error ``1/2 ||f(w) - c||^2`` against a constant output ``c = f(w_0) - 1`` at
    ``w = w_0``: the same direction, up to sign, as against any constant ``c = f(w_0) - t`` for a
    scalar output.
    """
    return outputs.reshape(outputs.shape[0], -1).sum(dim=1, keepdim=True)


def finish_pefs(g: torch.Tensor, spec: PefSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """SVD-reduce (optional) and normalise ``g`` ``[B, R, d]``.

    Returns ``(g', norms)`` with ``g'`` ``[B, stored_rank, d]`` such that ``||g'^T g'||_F = 1``
    and ``norms[b] = ||g_b^T g_b||_F`` before normalisation (zero PEFs stay zero). Divergence
    gradients are kept as they are (``spec.normalised`` is False): their size is what they say.
    """
    if spec.svd_rank is not None and spec.svd_rank < g.shape[1]:
        _, s, vh = torch.linalg.svd(g, full_matrices=False)
        k = spec.svd_rank
        g = s[:, :k, None] * vh[:, :k, :]
    gram = g @ g.transpose(1, 2)
    norms = torch.linalg.matrix_norm(gram)
    if not spec.normalised:
        return g, norms
    scale = torch.where(norms > 0, norms.rsqrt(), torch.zeros_like(norms))
    return g * scale[:, None, None], norms
