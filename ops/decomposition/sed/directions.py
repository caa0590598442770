"""The directions U ``[K, d]`` that a sparse eigendecomposition learns, as torch modules: full rows,
or the draft's low-rank parameterisation (each direction, per parameter tensor, a sum of ``r``
outer products of one vector per axis, as LoRA factors a weight update).

The low-rank form needs the tensors' shapes, which only an unprojected store (``--projection
none``) has: there a row *is* the flat parameter vector, laid out as the store's parameter layout
says. A projected row ``A g`` mixes every parameter into every coordinate, so a direction of the
stored space has no tensor structure to factor; factoring it in parameter space instead would mean
holding ``K`` directions of length ``n`` and projecting them at every step, the work and memory
the projection exists to avoid.

Both start from unit-norm directions: full ones from examples of a first minibatch drawn by
residual sampling (:func:`residual_sample`), low-rank ones (which cannot equal an example) from a
seeded float64 normal.
"""

from __future__ import annotations

import math

import torch

from npeff.errors import InvalidArgumentError


def initial_directions(n_components: int, dim: int, generator: torch.Generator,
                       sample: torch.Tensor | None = None) -> torch.Tensor:
    """``[K, d]`` float64 unit rows: examples of ``sample`` ``[B, d]`` drawn by residual sampling
    (:func:`residual_sample`), the rest (all of them without a sample) from a seeded normal."""
    chosen = residual_sample(sample, n_components, generator) if sample is not None else []
    u = torch.randn(n_components - len(chosen), dim, generator=generator, dtype=torch.float64)
    u = torch.cat([torch.stack(chosen).to(torch.float64), u]) if chosen else u
    return u / u.norm(dim=1, keepdim=True)


def residual_sample(x: torch.Tensor, count: int, generator: torch.Generator, *, tolerance: float = 1e-6
                    ) -> list[torch.Tensor]:
    """Up to ``count`` rows of ``x`` ``[B, d]``, each drawn with probability proportional to its squared
    distance from the span of those drawn before (k-means++'s D² rule, with subspaces for points):
    large gradients that point elsewhere than the ones already chosen are chosen first. Stops early
    when what is left of ``x`` is below ``tolerance`` of its squared size.

    Notes:
        Work: one pass over ``x`` per draw (``x v`` for the new basis vector ``v``, which updates every
        row's squared distance); nothing of ``x``'s size is copied.
    """
    weights = (x * x).sum(dim=1, dtype=torch.float64)
    total = float(weights.sum())
    basis = torch.zeros(0, x.shape[1], dtype=torch.float64, device=x.device)  # orthonormal, the span so far
    chosen = []
    while len(chosen) < count and total > 0:
        weights.clamp_(min=0)
        if float(weights.sum()) <= tolerance * total:
            break
        j = int(torch.multinomial(weights / weights.sum(), 1, generator=generator))
        v = x[j].to(torch.float64)
        for _ in range(2):  # Gram-Schmidt, twice: orthogonal to rounding
            v = v - basis.T @ (basis @ v)
        weights[j] = 0
        if float(v.norm()) == 0:
            continue
        v = v / v.norm()
        chosen.append(x[j])
        basis = torch.cat([basis, v[None]])
        weights -= (x @ v.to(x.dtype)).to(torch.float64) ** 2
    return chosen


class FullDirections(torch.nn.Module):
    """U as one ``[K, d]`` parameter. Memory: ``K d`` (Adam adds twice that)."""

    def __init__(self, n_components: int, dim: int, generator: torch.Generator, dtype: torch.dtype,
                 sample: torch.Tensor | None = None):
        super().__init__()
        self.u = torch.nn.Parameter(initial_directions(n_components, dim, generator, sample).to(dtype))

    def forward(self) -> torch.Tensor:
        return self.u


class LowRankDirections(torch.nn.Module):
    """U with each direction ``i``, on a parameter tensor ``j`` of shape ``(a, b, ...)``, equal to
    ``sum_k A[i, k] ⊗ B[i, k] ⊗ ...`` (``A[i, k]`` of length ``a``...); tensors of one axis (biases)
    stay full vectors.

    Args:
        shapes: the parameter tensors' shapes, in the order of the flat vector.
        n_components: K; rank: r.

    Notes:
        Parameters: ``K r (a + b + ...)`` per tensor of several axes instead of ``K a b ...``. The
        materialised U ``[K, n]`` is built at every step (memory ``K n``, as the full form).
    """

    def __init__(self, shapes: list[tuple[int, ...]], n_components: int, rank: int, generator: torch.Generator,
                 dtype: torch.dtype):
        super().__init__()
        if not shapes:
            raise InvalidArgumentError("low-rank directions need the parameter tensors' shapes")
        self.shapes = [tuple(int(s) for s in shape) for shape in shapes]
        self.factors = torch.nn.ModuleList()
        for shape in self.shapes:
            axes = shape if len(shape) > 1 else (math.prod(shape),)
            per_axis = [(n_components, rank, size) if len(axes) > 1 else (n_components, size) for size in axes]
            self.factors.append(torch.nn.ParameterList(
                [torch.nn.Parameter(torch.randn(*s, generator=generator, dtype=torch.float64)) for s in per_axis]))
        with torch.no_grad():  # unit-norm directions: every factor of direction i scaled alike
            norms = self._materialise().norm(dim=1)
            for factors in self.factors:
                for factor in factors:
                    factor /= norms.view(-1, *([1] * (factor.ndim - 1))) ** (1 / len(factors))
        self.to(dtype)

    def _materialise(self) -> torch.Tensor:
        blocks = []
        for factors in self.factors:
            if len(factors) == 1:
                blocks.append(factors[0])
                continue
            product = factors[0]  # [K, r, a]
            for factor in factors[1:]:  # outer product with the next axis: [K, r, a * b]
                product = (product[:, :, :, None] * factor[:, :, None, :]).flatten(2)
            blocks.append(product.sum(dim=1))
        return torch.cat(blocks, dim=1)

    def forward(self) -> torch.Tensor:
        """``[K, n]`` the directions, tensor blocks in the order of the flat vector."""
        return self._materialise()


__all__ = ["FullDirections", "LowRankDirections", "initial_directions"]
