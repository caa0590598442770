"""The paper's baselines over the same stores (sections 3.1-3.3, appendix G).

Modules:
    config: :class:`ClusterConfig` and :class:`SaeConfig` (no torch).
    kmeans: Lloyd's k-means as chunk steps on :mod:`npeff.ops.stream` (and k-means++ seeding).
    gradient_clustering: :func:`cluster` (``npeff cluster``), k-means on a gradient store.
    activations: capturing a model's residual stream at the final token (``npeff build --activations``).
    sae: :func:`train_sae` (``npeff sae``), a TopK sparse autoencoder on an activation store.

Each writes a decomposition directory (components as H, per-example scores as W), which every
analysis command reads as it is. The names below are imported on first use.
"""

from npeff._lazy import lazy_exports

_EXPORTS = {
    "ClusterConfig": "npeff.ops.baselines.config",
    "cluster": "npeff.ops.baselines.gradient_clustering",
    "SaeConfig": "npeff.ops.baselines.config",
    "train_sae": "npeff.ops.baselines.sae",
    "build_activation_store": "npeff.ops.baselines.activations",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = sorted(_EXPORTS)
