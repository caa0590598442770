"""The projection's self-check behind ``npeff check-projection``: its promises measured on random data."""

from __future__ import annotations

import time

import numpy as np

from npeff.cuda_ops import last_backend, project, project_transpose


def projection_demo(*, n: int, d: int, rows: int, seed: int, backend: str = "auto") -> dict:
    """Project ``rows`` random vectors of length ``n`` and measure the projection's promises.

    Returns a dict with timings, norm and cosine distortion, block additivity and adjoint errors,
    and ``ok`` (all within the bounds expected for a random projection to ``d`` dimensions).
    Memory: ``rows * n`` float32 for the input.
    """
    gen = np.random.default_rng(seed)
    x = gen.standard_normal((rows, n), dtype=np.float32)
    project(x[:, :256], d=d, seed=seed, n_total=n, backend=backend)  # compile before timing
    start = time.perf_counter()
    y = project(x, d=d, seed=seed, n_total=n, backend=backend)
    seconds = time.perf_counter() - start
    ran = last_backend()

    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    ratios = np.linalg.norm(y64, axis=1) / np.linalg.norm(x64, axis=1)
    xn = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
    yn = y64 / np.linalg.norm(y64, axis=1, keepdims=True)
    cosine_error = np.abs(xn @ xn.T - yn @ yn.T).max()

    half = n // 2
    parts = project(x[:, :half], d=d, seed=seed, n_total=n, backend=backend) + project(
        x[:, half:], d=d, seed=seed, offset=half, n_total=n, backend=backend)
    additivity = float(np.abs(parts - y).max() / np.abs(y).max())

    probe = gen.standard_normal((rows, d), dtype=np.float32)
    back = project_transpose(probe, n=n, d=d, seed=seed, backend=backend).astype(np.float64)
    left = np.einsum("rd,rd->r", y64, probe.astype(np.float64))
    right = np.einsum("rn,rn->r", x64, back)
    adjoint = float(np.abs(left - right).max() / np.abs(left).max())

    expected_std = 1.0 / np.sqrt(d)
    ok = (
        abs(ratios.mean() - 1.0) < 6 * expected_std
        and cosine_error < 8 * expected_std
        and additivity < 1e-4
        and adjoint < 1e-4
    )
    return {
        "n": n, "d": d, "rows": rows, "backend": ran, "seconds": seconds,
        "gb_per_s": x.nbytes / seconds / 1e9,
        "norm_ratio_mean": float(ratios.mean()), "norm_ratio_std": float(ratios.std()),
        "expected_std": float(expected_std), "cosine_error_max": float(cosine_error),
        "additivity_error": additivity, "adjoint_error": adjoint, "ok": bool(ok),
    }
