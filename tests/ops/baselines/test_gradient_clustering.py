"""Gradient clustering: k-means against scikit-learn from the same centroids, streamed against in
memory, local:2 against one process, empty clusters, the output as a decomposition, bad inputs."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from npeff.errors import InvalidArgumentError
from npeff.ops.analysis import compute_tunings, top_indices
from npeff.ops.baselines import ClusterConfig, cluster
from npeff.ops.baselines.kmeans import kmeans_plus_plus, update_centroids
from npeff.store import create_store, open_decomposition
from tests import tolerances


def blobs(m=240, d=24, k=5, seed=0, spread=0.35):
    """Unit rows around k random directions (float32-representable float64)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    x = centres[rng.integers(k, size=m)] + spread * rng.standard_normal((m, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32).astype(np.float64)


def gradient_store(path, x, *, shard=32, status=None, scale=None):
    scale = np.ones(len(x)) if scale is None else scale
    writer = create_store(path, rank=1, dim=x.shape[1], projection={"kind": "external"}, kind="gradient",
                          shard_examples=shard, chunk_examples=8)
    rows = [{"status": s} for s in status] if status else None
    writer.append((x * scale[:, None])[:, None, :].astype(np.float32), rows)
    return writer.finalize()


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_against_scikit_learn_from_the_same_centroids(tmp_path):
    x = blobs()
    # stored at other norms: the clustering normalises each gradient to unit L2 norm
    store = gradient_store(tmp_path / "s", x, scale=np.linspace(0.5, 3.0, len(x)))
    start = x[[0, 50, 100, 150, 200]]
    ours = cluster(store, 5, initial_centroids=start, dtype="float64", iterations=100)
    reference = KMeans(n_clusters=5, init=start, n_init=1, max_iter=100, tol=0.0, algorithm="lloyd").fit(x)
    assert ours["converged"]
    np.testing.assert_array_equal(ours["labels"], reference.labels_)
    np.testing.assert_allclose(ours["H"], reference.cluster_centers_, **tolerances.FLOAT32_VS_FLOAT64)
    np.testing.assert_allclose(ours["final_inertia"], reference.inertia_, **tolerances.FLOAT32_VS_FLOAT64)
    assert ours["iterations"] == reference.n_iter_  # both count the pass that found no change


def test_streamed_and_local2_equal_in_memory(tmp_path):
    x = blobs(m=200, seed=3)
    store = gradient_store(tmp_path / "s", x, shard=24)
    resident = cluster(store, 4, seed=7, dtype="float64")
    streamed = cluster(store, 4, seed=7, dtype="float64", memory_budget=1)
    distributed = cluster(store, 4, seed=7, dtype="float64", cluster="local:2")
    for other in (streamed, distributed):
        np.testing.assert_array_equal(other["labels"], resident["labels"])
        np.testing.assert_allclose(other["H"], resident["H"], **tolerances.FLOAT64_REDUCED_ELSEWHERE)
        np.testing.assert_allclose(other["inertia"], resident["inertia"], **tolerances.FLOAT64_REDUCED_ELSEWHERE)
    # seeded: the same seed, the same result; another seed starts elsewhere
    again = cluster(store, 4, seed=7, dtype="float64")
    np.testing.assert_array_equal(again["H"], resident["H"])


def test_kmeans_plus_plus_draws_far_points():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.01], [10.0, 0.0], [10.0, 0.01], [0.0, 10.0]], dtype=torch.float64)
    for seed in range(5):
        centres = kmeans_plus_plus(x, 3, torch.Generator().manual_seed(seed))
        groups = {tuple(np.round(c.numpy() / 10)) for c in centres}
        assert groups == {(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)}  # one from each far-apart group


def naive_lloyd_with_relocation(x, centroids, iterations):
    """scikit-learn's Lloyd step written out: an empty cluster takes the farthest example."""
    for _ in range(iterations):
        d2 = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
        labels = d2.argmin(1)
        far = np.argsort(-d2[np.arange(len(x)), labels], kind="stable")
        new = centroids.copy()
        counts = np.bincount(labels, minlength=len(centroids))
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, x)
        for cluster_id, i in zip(np.flatnonzero(counts == 0), far):
            sums[labels[i]] -= x[i]
            counts[labels[i]] -= 1
            sums[cluster_id], counts[cluster_id] = x[i], 1
        filled = counts > 0
        new[filled] = sums[filled] / counts[filled, None]
        centroids = new
    return centroids


def test_an_empty_cluster_takes_the_farthest_example(tmp_path):
    x = blobs(m=60, d=8, k=2, seed=4)
    start = np.vstack([x[0], x[1], -10 * np.ones(8)])  # the third centroid is nearest to nothing
    result = cluster(gradient_store(tmp_path / "s", x), 3, initial_centroids=start, dtype="float64", iterations=1)
    assert result["relocated"] == [1]
    np.testing.assert_allclose(result["H"], naive_lloyd_with_relocation(x, start, 1),
                               **tolerances.FLOAT32_VS_FLOAT64)


def test_update_keeps_a_lone_member():
    from npeff.ops.baselines.kmeans import LloydPartials

    partials = LloydPartials(sums=torch.tensor([[1.0, 0.0], [0.0, 0.0]]), counts=torch.tensor([1.0, 0.0]),
                             inertia=torch.tensor(0.0), changed=torch.tensor(0.0),
                             far_distance=torch.tensor([0.0]), far_label=torch.tensor([0]),
                             far_rows=torch.tensor([[1.0, 0.0]]))
    centroids, moved = update_centroids(partials, torch.tensor([[0.5, 0.0], [0.0, 3.0]]))
    assert moved == 0 and centroids.tolist() == [[1.0, 0.0], [0.0, 3.0]]  # cluster 1 keeps its centroid


def test_the_output_is_a_decomposition_the_analysis_reads(tmp_path):
    x = blobs(m=120, d=16, k=3, seed=5)
    status = ["ok"] * 119 + ["skipped"]
    store = gradient_store(tmp_path / "s", x, status=status)
    returned = cluster(store, 4, out=tmp_path / "c", seed=1)
    decomposition = open_decomposition(tmp_path / "c")
    assert decomposition.method == "gradient-clustering" and returned.path == decomposition.path
    labels = decomposition.array("labels")
    assert labels[-1] == -1 and (labels[:-1] >= 0).all()
    W, H = decomposition.W, decomposition.H
    assert W.shape == (120, 4) and H.shape == (4, 16)
    assert (np.count_nonzero(W, axis=1)[:-1] == 1).all() and not W[-1].any()
    # top examples: the members nearest the centroid, best first
    for k, top in top_indices(W, 5).items():
        members = np.flatnonzero(labels == k)
        distance = ((unit(x[members]) - H[k]) ** 2).sum(1)
        np.testing.assert_array_equal(np.sort(top), np.sort(members[np.argsort(distance, kind="stable")[:5]]))
    sizes = np.bincount(labels[labels >= 0], minlength=4)
    assert decomposition.manifest["details"]["clusters_under_16"] == int((sizes < 16).sum())
    tunings = compute_tunings(W, predictions=np.zeros(120, int), labels=np.zeros(120, int))
    assert tunings.summary()["n_excluded"] == int((sizes < 16).sum())


def test_bad_inputs(tmp_path):
    pef = create_store(tmp_path / "p", rank=2, dim=8, projection={"kind": "external"})
    pef.append(np.ones((4, 2, 8), np.float32))
    with pytest.raises(InvalidArgumentError, match="kind 'lrm-pef'.*npeff build --gradient"):
        cluster(pef.finalize(), 2)
    store = gradient_store(tmp_path / "g", blobs(m=10, d=8, k=2))
    with pytest.raises(InvalidArgumentError, match="K = 11 clusters need at least 11"):
        cluster(store, 11)
    with pytest.raises(InvalidArgumentError, match=r"initial centroids must be \[2, 8\]"):
        cluster(store, 2, initial_centroids=np.zeros((3, 8)))
    for bad in (dict(n_clusters=0), dict(n_clusters=2, iterations=0), dict(n_clusters=3, sample=2),
                dict(n_clusters=2, dtype="float16"), dict(n_clusters=True)):
        with pytest.raises(InvalidArgumentError):
            ClusterConfig(**bad)
