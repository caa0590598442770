"""How much a perturbation changes a model's predictions: the KL divergence between the original and
the perturbed predictive distributions of the store's task formulation, per example (paper,
section 3.2)."""

from __future__ import annotations

from typing import Sequence

import torch


def predictive_log_probs(formulation, texts: Sequence[str], *, batch_size: int = 16) -> torch.Tensor:
    """``[N, C]`` float64 class log-probabilities of the task formulation on ``texts`` (no gradients).

    Notes:
        Memory: one batch of forward passes at a time, plus the ``[N, C]`` result.
    """
    parts = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            log_probs, _ = formulation.log_probs(list(texts[start:start + batch_size]))
            parts.append(log_probs.detach().double().cpu())
    return torch.cat(parts) if parts else torch.zeros(0, 0, dtype=torch.float64)


def kl_divergence(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` per row of two ``[N, C]`` log-probability tensors: ``sum_c p_c (log p_c - log q_c)``,
    ``[N]``, float64, never negative (classes with ``p_c = 0`` contribute nothing)."""
    log_p, log_q = log_p.double(), log_q.double()
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    return terms.sum(dim=1).clamp_min(0.0)
