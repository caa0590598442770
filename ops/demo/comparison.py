"""The demo's method comparison (paper, sections 3.1 and 3.3): G-NPEFF, gradient clustering, a
TopK SAE and the sparse eigendecomposition of divergence gradients on the same planted examples as
NPEFF, each with its tunings, tuning classifier and alignment with the planted strategies."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from npeff.ops.demo.alignment import alignment


def sae_k(n_latents: int) -> int:
    """Active latents of the demo's SAE: a sixth of the latents (the paper's k = 32 is for thousands)."""
    return max(1, n_latents // 6)


def run_baselines(out: Path, settings, *, network, tokenizer, task, examples, strategies: list[str],
                  progress: bool = False, log: Callable[[str], None] = lambda message: None) -> dict:
    """Build the gradient, activation and divergence stores of the demo's examples and run G-NPEFF,
    gradient clustering, the SAE and SED with the demo's number of components.

    Returns:
        ``{"outputs": {name: opened decomposition}, "timings": {...}}``; the outputs are written
        to ``out/gnpeff``, ``out/clusters``, ``out/sae`` and ``out/sed`` (stores to
        ``out/gradient-store``, ``out/activation-store`` and ``out/divergence-store``).
    """
    from npeff.ops.baselines import build_activation_store, cluster, train_sae
    from npeff.ops.decomposition import DecomposeConfig, decompose
    from npeff.ops.decomposition.sed import sparse_eigendecomposition
    from npeff.ops.pef import PefSpec, build_store

    c, timings = settings.n_components, {}
    mark = time.perf_counter()
    gradients = build_store(network, examples, task, out / "gradient-store", tokenizer=tokenizer,
                            pef=PefSpec(kind="gradient"), dim=settings.dim, seed=settings.seed, batch_size=32,
                            backend="cpu", progress=progress, model_name=str(out / "model"))
    config = DecomposeConfig(n_components=c, warmup_steps=settings.warmup_steps, joint_steps=settings.joint_steps,
                             warmup_lr=settings.warmup_lr, joint_lr=settings.joint_lr, seed=settings.seed)
    gnpeff = decompose(gradients, config=config, out=out / "gnpeff", progress=progress)
    timings["gnpeff_s"] = time.perf_counter() - mark
    log(f"    G-NPEFF: {c} components of the predicted-class gradients")
    mark = time.perf_counter()
    clusters = cluster(gradients, c, out=out / "clusters", seed=settings.seed, progress=progress)
    timings["cluster_s"] = time.perf_counter() - mark
    log(f"    gradient clustering: k-means with K = {c}, {clusters.manifest['details']['iterations']} Lloyd passes")
    mark = time.perf_counter()
    activations = build_activation_store(network, examples, task, out / "activation-store", tokenizer=tokenizer,
                                         batch_size=32, progress=progress, model_name=str(out / "model"))
    sae = train_sae(activations, c, k=sae_k(c), steps=settings.sae_steps, batch_size=settings.sae_batch_size,
                    seed=settings.seed, out=out / "sae", progress=progress)
    timings["sae_s"] = time.perf_counter() - mark
    log(f"    TopK SAE: {c} latents, k = {sae_k(c)}, {settings.sae_steps} steps on the final-token activations")
    mark = time.perf_counter()
    divergences = build_store(network, examples, task, out / "divergence-store", tokenizer=tokenizer,
                              pef=PefSpec(kind="divergence"), dim=settings.dim, seed=settings.seed, batch_size=32,
                              backend="cpu", progress=progress, model_name=str(out / "model"))
    sed = sparse_eigendecomposition(divergences, c, steps=settings.sed_steps, seed=settings.seed, out=out / "sed",
                                    dtype="float64", progress=progress)
    timings["sed_s"] = time.perf_counter() - mark
    log(f"    SED: {c} sparse directions of the divergence gradients, {settings.sed_steps} steps")
    return {"outputs": {"G-NPEFF": gnpeff, "gradient clustering": clusters, "SAE": sae, "SED": sed},
            "timings": timings}


def comparison_table(outputs: dict, strategies: list[str]) -> list[dict]:
    """One JSON-ready row per method: tunings, the tuning classifier and the planted-strategy alignment."""
    from npeff.ops.analysis import method_row

    rows = []
    for name, decomposition in outputs.items():
        row = method_row(decomposition, name=name)
        aligned = alignment(decomposition.W, strategies)
        rows.append({"name": name, "method": row["method"], "path": row["path"], "tunings": row["summary"],
                     "classifier": row["classifier"],
                     "alignment": {key: aligned[key] for key in ("n_analysed", "aligned_fraction", "mean_purity",
                                                                 "strategies_found")}})
    return rows


__all__ = ["comparison_table", "run_baselines", "sae_k"]
