"""Gradient clustering (Michaud et al. 2023, as the NPEFF paper runs it, section 3.1): k-means on the
unit-normalised projected predicted-class gradients of a ``npeff build --gradient`` store, streamed
one Lloyd iteration per pass (:mod:`npeff.ops.baselines.kmeans` on :mod:`npeff.ops.stream`).

The result is a decomposition directory (:mod:`npeff.store.decomposition`, ``method`` =
``gradient-clustering``) that every analysis command reads as it is: ``H`` ``[K, d]`` are the
centroids and ``W`` ``[m, K]`` scores each example's membership by proximity,
``W[i, label_i] = 1 / (1 + ||x_i - c_label_i||²)`` and 0 elsewhere, so a cluster's top examples are
its members nearest the centroid and a cluster of fewer than 16 members is left out of tunings
(as a component with fewer than 16 non-zero coefficients is). ``labels.npy`` ``[m]`` (-1 for
examples without a PEF) and the inertia per iteration (as ``losses``) are kept beside them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from npeff._config import resolve_config
from npeff.errors import InvalidArgumentError
from npeff.ops.baselines import kmeans
from npeff.ops.baselines.config import ClusterConfig
from npeff.ops.stream import check_device, make_runner, ok_mask, parse_bytes, require_finalized
from npeff.ops.stream.cluster import cluster_label, resolve_cluster
from npeff.store import PefStore, open_store
from npeff.store.decomposition import (Decomposition, DecompositionManifest, open_decomposition,
                                       prepare_decomposition_dir, write_decomposition)
from npeff.store.provenance import new_provenance, now_iso

METHOD = "gradient-clustering"
#: the k-means++ sample: this many examples per cluster, at least SAMPLE_FLOOR, at most all
SAMPLE_PER_CLUSTER = 20
SAMPLE_FLOOR = 2048


def proximity(distance: np.ndarray) -> np.ndarray:
    """Membership score of a squared distance to the centroid: ``1 / (1 + d²)``, in (0, 1]."""
    return 1.0 / (1.0 + distance)


def check_gradient_store(store: PefStore) -> None:
    """Refuse a store that is not of rank-1 gradients (a PEF store of rank r > 1 is not clustered)."""
    kind = store.config.kind
    if kind != "gradient":
        raise InvalidArgumentError(
            f"{store.path} is a store of kind {kind!r}; gradient clustering needs a store of gradients "
            f"(kind 'gradient', built with npeff build --gradient)")


def cluster(store: PefStore | str | Path, n_clusters: int | None = None, *, config: ClusterConfig | None = None,
            out: str | Path | None = None, device: str = "cpu", memory_budget: int | str | None = None,
            cluster: str | None = None, initial_centroids: np.ndarray | None = None, overwrite: bool = False,
            progress: bool = False, command: str | None = None, **overrides) -> Decomposition | dict:
    """k-means on a gradient store, streamed; the paper's gradient-clustering baseline.

    Args:
        store: a ``gradient`` store (or its path).
        n_clusters: K (or give ``config``); other :class:`ClusterConfig` fields as keywords.
        out: the output directory; without it a dict with ``W``, ``H`` (centroids), ``labels``,
            ``inertia``, ``relocated`` and ``iterations`` is returned.
        device, memory_budget, cluster: as for :func:`npeff.ops.decompose`.
        initial_centroids: ``[K, d]`` to start from instead of k-means++ (for comparisons).

    Notes:
        Memory: the centroids and the sums ``[K, d]`` twice, labels and distances ``[m]``, the
        k-means++ sample ``[s, d]``, plus the resident pieces of the plan and three streamed ones.
    """
    store = store if isinstance(store, PefStore) else open_store(store)
    require_finalized(store)
    check_gradient_store(store)
    cluster = resolve_cluster(cluster)  # --cluster, a Client, or $DASK_SCHEDULER_ADDRESS; None: here
    check_device(device, cluster)
    config = resolve_config(ClusterConfig, config, "n_clusters", n_clusters, overrides)
    k = config.n_clusters
    mask = ok_mask(store, "cpu", torch.float32)
    usable = int(mask.sum())
    if k > usable:
        raise InvalidArgumentError(f"K = {k} clusters need at least {k} examples with a gradient; "
                                   f"{store.path} has {usable}")
    dtype = getattr(torch, config.dtype)
    if initial_centroids is not None:
        initial_centroids = np.asarray(initial_centroids)
        if initial_centroids.shape != (k, store.dim):
            raise InvalidArgumentError(f"initial centroids must be [{k}, {store.dim}], got "
                                       f"{list(initial_centroids.shape)}")
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        prepare_decomposition_dir(out_path, overwrite=overwrite, inputs=(store.location.local,))

    m = store.num_examples
    runner = make_runner(store, device=device, dtype=dtype, cluster=cluster, memory_budget=parse_bytes(memory_budget))
    from npeff.progress import progress_bar

    inertia, relocated, step_seconds = [], [], []
    converged = False
    try:
        rows = {"mask": mask, "labels": torch.full((m,), kmeans.LABEL_NONE - 1, dtype=torch.int64),
                "distance": torch.zeros(m, dtype=dtype)}
        if initial_centroids is None:
            rows["sampled"] = _sample_mask(mask, config)
        runner.start(rows)
        if initial_centroids is None:
            sample = runner.run_pass(kmeans.sample_step)
            order = torch.argsort(sample.index)  # the same draw whatever the pass's order
            generator = torch.Generator().manual_seed(config.seed)
            centroids = kmeans.kmeans_plus_plus(sample.rows[order], k, generator)
        else:
            centroids = torch.from_numpy(initial_centroids).to(runner.device, dtype)
        with progress_bar(total=config.iterations, desc="cluster", unit="pass", enabled=progress) as bar:
            for _ in range(config.iterations):
                began = time.perf_counter()
                partials = runner.run_pass(kmeans.assign_step, centroids)
                centroids, moved = kmeans.update_centroids(partials, centroids)
                inertia.append(float(partials.inertia))
                relocated.append(moved)
                step_seconds.append(time.perf_counter() - began)
                bar.set_postfix(inertia=f"{inertia[-1]:.5g}", changed=int(partials.changed), refresh=False)
                bar.update(1)
                if int(partials.changed) == 0 and moved == 0:
                    converged = True
                    break
        # labels and distances against the final centroids; once converged, the last pass's are
        # already those (its labels gave the same centroids), so no pass is spent on them
        final = partials if converged else runner.run_pass(kmeans.assign_step, centroids)
        labels = runner.gather("labels").cpu().numpy()
        distance = runner.gather("distance").double().cpu().numpy()
    finally:
        runner.close()
    w = np.zeros((m, k), dtype=np.float32)
    members = labels >= 0
    w[np.flatnonzero(members), labels[members]] = proximity(distance[members])
    sizes = np.bincount(labels[members], minlength=k)
    result = {"W": w, "H": centroids.cpu().numpy().astype(np.float32), "labels": labels,
              "inertia": np.asarray(inertia), "relocated": relocated, "iterations": len(inertia),
              "converged": converged, "final_inertia": float(final.inertia), "sizes": sizes,
              "step_seconds": np.asarray(step_seconds)}
    if out_path is None:
        return result
    manifest = DecompositionManifest(
        method=METHOD, config=config.to_dict(), n_components=k, num_examples=m, dim=store.dim,
        store=store.url, store_fingerprint=store.fingerprint, store_content_id=store.content_id,
        memory_budget=parse_bytes(memory_budget), cluster=cluster_label(cluster), device=device,
        final_loss=float(final.inertia),
        median_step_seconds=float(np.median(step_seconds)) if step_seconds else None,
        details={"iterations": len(inertia), "converged": converged, "relocated_empty": int(sum(relocated)),
                 "empty_clusters": int((sizes == 0).sum()), "smallest_cluster": int(sizes.min()),
                 "clusters_under_16": int((sizes < 16).sum()),
                 "membership_score": "1 / (1 + squared distance to the centroid)",
                 "losses": "inertia (sum of squared distances) after each Lloyd assignment"},
        provenance=dict(new_provenance(command), finalized=now_iso()))
    write_decomposition(out_path, W=w, H=result["H"], losses=result["inertia"], manifest=manifest,
                        extra={"labels": labels})
    return open_decomposition(out_path)


def _sample_mask(mask: torch.Tensor, config: ClusterConfig) -> torch.Tensor:
    """``[m]`` 1 for the seeded k-means++ sample of usable examples."""
    usable = np.flatnonzero(mask.numpy() > 0)
    size = config.sample or max(SAMPLE_PER_CLUSTER * config.n_clusters, SAMPLE_FLOOR)
    size = min(size, len(usable))
    rng = np.random.default_rng(config.seed)
    chosen = rng.choice(usable, size=size, replace=False) if size < len(usable) else usable
    sampled = torch.zeros(mask.shape[0], dtype=torch.float32)
    sampled[torch.from_numpy(np.asarray(chosen, dtype=np.int64))] = 1
    return sampled


def sizes_summary(sizes: np.ndarray) -> str:
    """``"K clusters, sizes 3..120 (median 40), 2 under 16 members"``."""
    return (f"{len(sizes)} clusters, sizes {int(sizes.min())}..{int(sizes.max())} "
            f"(median {int(np.median(sizes))}), {int((sizes < 16).sum())} under 16 members"
            + (f", {int((sizes == 0).sum())} empty" if (sizes == 0).any() else ""))


