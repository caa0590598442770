"""PEF data and a naive Algorithm 1 for the decomposition tests."""

import numpy as np
import torch

from npeff.store import create_store


def naive_npeff(g, w, h, *, warmup, joint, lr_warm, lr_joint):
    """Algorithm 1 written out in float64 on the whole tensor; returns per-step (W, H, loss)."""
    history = []
    m, r, n = g.shape
    for step in range(warmup + joint):
        b = torch.einsum("ijl,kl->ijk", g, h)
        hh = h @ h.T
        if step >= warmup:
            numerator = (b ** 2).sum(dim=1)
            denominator = w @ (hh * hh)
            w = w * numerator / denominator
        loss = sum(torch.linalg.matrix_norm(g[i].T @ g[i] - (h.T * w[i]) @ h) ** 2 for i in range(m))
        t1 = 4 * ((w.T @ w) * hh) @ h
        t2 = -4 * torch.einsum("ji,jki,jkl->il", w, b, g)
        h = h - (lr_joint if step >= warmup else lr_warm) * (t1 + t2)
        history.append((w.clone(), h.clone(), float(loss)))
    return history


def make_store(path, g, *, shard=4, status=None, normalized=True):
    """A store of ``g``; the helpers' PEFs are unit-norm, so it says so unless told otherwise."""
    writer = create_store(path, rank=g.shape[1], dim=g.shape[2], projection={"kind": "external"},
                          shard_examples=shard, chunk_examples=1, normalized=normalized)
    writer.append(g.numpy().astype(np.float32), [{"status": s} for s in status] if status else None)
    return writer.finalize()


def random_pefs(m=10, r=3, d=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(m, r, d, generator=gen, dtype=torch.float64)
    norms = torch.linalg.matrix_norm(g @ g.transpose(1, 2)) ** 0.5
    return (g / norms[:, None, None]).float().double()  # unit Frobenius PEFs, exactly float32-representable


def planted(m=120, r=3, d=64, c=4, seed=1):
    """PEFs G_i stacking sqrt(w_ij) h_j rows over a few active components (rank <= r)."""
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(c, d, generator=gen, dtype=torch.float64)
    h /= h.norm(dim=1, keepdim=True)
    w = torch.zeros(m, c, dtype=torch.float64)
    g = torch.zeros(m, r, d, dtype=torch.float64)
    for i in range(m):
        active = torch.randperm(c, generator=gen)[: 1 + i % 2]
        for row, j in enumerate(active):
            w[i, j] = 0.5 + torch.rand(1, generator=gen, dtype=torch.float64).item()
            g[i, row] = w[i, j].sqrt() * h[j]
    scale = torch.linalg.matrix_norm(g @ g.transpose(1, 2))
    return g / scale.sqrt()[:, None, None], w / scale[:, None], h


def best_cosines(found, truth):
    found = found / np.linalg.norm(found, axis=1, keepdims=True)
    truth = truth / np.linalg.norm(truth, axis=1, keepdims=True)
    return np.abs(truth @ found.T).max(axis=1)
