"""How well the components of a decomposition match the strategies planted in the demo's data:
each analysed component's purity, against the purity of random sets of examples (chance)."""

from __future__ import annotations

import numpy as np

from npeff.ops.analysis import nonzero_counts, top_indices

#: random draws of ``top`` examples that estimate the chance figures
CHANCE_DRAWS = 2000


def alignment(W: np.ndarray, strategies: list[str], *, top: int = 16, threshold: float = 0.75,
              seed: int = 0) -> dict:
    """How well components match the planted strategies.

    For each component with at least ``top`` non-zero coefficients, the purity is the fraction of
    its top examples that share the most common strategy; a component is *aligned* when its purity
    reaches ``threshold``. Chance: the same figures for random sets of ``top`` examples.

    Args:
        W: coefficients ``[m, C]``.
        strategies: the planted strategy of each of the ``m`` examples.
        top: top examples per component (and the minimum of non-zero coefficients to analyse it).
        threshold: the purity from which a component counts as aligned.
        seed: seed of the chance draws.

    Returns:
        ``aligned_fraction``, ``mean_purity`` and their ``chance_`` counterparts, ``n_analysed``,
        ``strategies_found`` (those of the aligned components) and per-component ``components``.
    """
    strategies = np.asarray(strategies)
    counts = nonzero_counts(W)
    components = []
    for c, idx in top_indices(W, min(top, W.shape[0])).items():
        if counts[c] < top:
            continue
        names, hits = np.unique(strategies[idx], return_counts=True)
        components.append({"component": c, "strategy": str(names[hits.argmax()]),
                           "purity": float(hits.max() / len(idx))})
    rng = np.random.default_rng(seed)
    chance = []
    for _ in range(CHANCE_DRAWS):
        _, hits = np.unique(rng.choice(strategies, size=top, replace=False), return_counts=True)
        chance.append(hits.max() / top)
    chance = np.asarray(chance)
    purities = np.asarray([c["purity"] for c in components])
    return {
        "threshold": threshold, "top": top, "n_analysed": len(components),
        "aligned_fraction": float((purities >= threshold).mean()) if len(components) else 0.0,
        "mean_purity": float(purities.mean()) if len(components) else 0.0,
        "chance_aligned_fraction": float((chance >= threshold).mean()),
        "chance_mean_purity": float(chance.mean()),
        "strategies_found": sorted({c["strategy"] for c in components if c["purity"] >= threshold}),
        "components": components,
    }


__all__ = ["alignment"]
