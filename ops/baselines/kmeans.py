"""k-means over a store, one pass per Lloyd iteration, as chunk steps on :mod:`npeff.ops.stream`.

Every example is its first row ``g_i = G_i[0]`` ``[d]`` scaled to unit L2 norm (the paper's gradient
clustering, section 3.1: "the gradients were normalized to unit L2 norm"). With centroids ``C``
``[K, d]`` fixed for the pass, each piece ``X_c`` ``[k, d]`` gives::

    D_c = ||x||² - 2 X_c Cᵀ + ||c||²       [k, K]     squared distances (clamped at 0)
    labels_c = argmin_K D_c                [k]        (-1 for examples without a PEF)
    sums_c = onehot(labels_c)ᵀ X_c         [K, d],    counts_c [K],   inertia_c = Σ min D_c

and the new centroids are ``Σ sums / Σ counts`` (the Lloyd step). A cluster left empty takes the
example farthest from its own centroid, as scikit-learn's Lloyd does (``_relocate_empty_clusters``):
every piece also reports its ``K`` farthest examples, so the relocation needs no extra pass.
"""

from __future__ import annotations

import dataclasses

import torch

from npeff.ops.stream.runner import PieceState

LABEL_NONE = -1


def unit_rows(g: torch.Tensor) -> torch.Tensor:
    """``[k, d]``: each example's first row scaled to unit L2 norm (zero rows stay zero)."""
    x = g[:, 0, :]
    norms = x.norm(dim=1, keepdim=True)
    return x / torch.where(norms > 0, norms, torch.ones_like(norms))


def squared_distances(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``[k, K]`` squared Euclidean distances, by the expansion ``||x||² - 2 x·c + ||c||²``.

    Notes:
        One ``[k, K]`` GEMM (the same shape as NPEFF's ``G Hᵀ`` at rank 1); memory ``k K``.
    """
    d2 = (x * x).sum(dim=1, keepdim=True) - 2.0 * (x @ centroids.T) + (centroids * centroids).sum(dim=1)[None, :]
    return d2.clamp_min_(0.0)


@dataclasses.dataclass
class LloydPartials:
    """A piece's (or a sum of pieces') share of one Lloyd iteration.

    Attributes:
        sums: ``[K, d]`` sum of the members of each cluster.
        counts: ``[K]`` float64, members per cluster.
        inertia: ``[]`` float64, the sum of squared distances to the nearest centroid.
        changed: ``[]`` float64, examples whose label changed in this pass.
        far_distance, far_label: ``[F]`` the ``F = K`` examples farthest from their centroids, and
            their labels; far_rows ``[F, d]`` those examples (for empty clusters).
    """

    sums: torch.Tensor
    counts: torch.Tensor
    inertia: torch.Tensor
    changed: torch.Tensor
    far_distance: torch.Tensor
    far_label: torch.Tensor
    far_rows: torch.Tensor

    def add_(self, other: LloydPartials) -> LloydPartials:
        self.sums.add_(other.sums)
        self.counts.add_(other.counts)
        self.inertia.add_(other.inertia)
        self.changed.add_(other.changed)
        distance = torch.cat([self.far_distance, other.far_distance])
        keep = torch.argsort(distance, descending=True, stable=True)[: max(len(self.far_distance),
                                                                            len(other.far_distance))]
        self.far_distance = distance[keep]
        self.far_label = torch.cat([self.far_label, other.far_label])[keep]
        self.far_rows = torch.cat([self.far_rows, other.far_rows])[keep]
        return self

    def to(self, device: torch.device | str) -> LloydPartials:
        return LloydPartials(*(getattr(self, f.name).to(device) for f in dataclasses.fields(self)))


def assign_step(state: PieceState, centroids: torch.Tensor) -> LloydPartials:
    """The chunk step: labels and distances of the piece's examples written in place
    (``state.rows["labels"]``, ``state.rows["distance"]``), and the piece's :class:`LloydPartials`.

    The unit rows are never materialised: with ``g`` the stored rows and ``s = 1/||g||``,
    ``x·c = s (g·c)`` and the members' sums are ``(onehot * s)ᵀ g``: two GEMMs of NPEFF's shapes
    (``G Hᵀ`` and ``Wᵀ G`` at r = 1) and no copy of the piece.

    Notes:
        Memory: ``[k, K]`` products and one-hot weights, and the ``[K, d]`` sums.
    """
    g = state.g[:, 0, :]
    ok = state.rows["mask"] > 0
    norms = g.norm(dim=1)
    inverse = torch.where(norms > 0, norms.reciprocal(), torch.zeros_like(norms))
    unit_norm = (norms > 0).to(g.dtype)  # ||x||² of a unit row (0 for a zero row)
    d2 = (unit_norm[:, None] - 2.0 * (g @ centroids.T) * inverse[:, None]
          + (centroids * centroids).sum(dim=1)[None, :]).clamp_min_(0.0)
    distance, labels = d2.min(dim=1)
    labels = torch.where(ok, labels, torch.full_like(labels, LABEL_NONE))
    distance = torch.where(ok, distance, torch.zeros_like(distance))
    changed = (labels != state.rows["labels"]).sum().double()
    state.rows["labels"].copy_(labels)
    state.rows["distance"].copy_(distance.to(state.rows["distance"]))
    k = centroids.shape[0]
    weights = torch.zeros(g.shape[0], k, dtype=g.dtype, device=g.device)
    members = torch.nonzero(ok).flatten()
    weights[members, labels[members]] = inverse[members]
    sums = weights.T @ g
    counts = torch.bincount(labels[members], minlength=k).double()
    far = torch.argsort(torch.where(ok, distance, torch.full_like(distance, -1.0)), descending=True,
                        stable=True)[:k]
    far = far[ok[far]]
    return LloydPartials(sums=sums, counts=counts, inertia=distance[ok].double().sum(), changed=changed,
                         far_distance=distance[far], far_label=labels[far], far_rows=g[far] * inverse[far, None])


def update_centroids(partials: LloydPartials, previous: torch.Tensor) -> tuple[torch.Tensor, int]:
    """New centroids ``[K, d]`` from the summed partials, empty clusters relocated; and how many were.

    An empty cluster takes the example farthest from its own centroid (the farthest first), which
    leaves its old cluster (scikit-learn's Lloyd does the same). A cluster that stays empty (fewer
    examples than clusters) keeps its previous centroid.
    """
    sums, counts = partials.sums.clone(), partials.counts.clone()
    empty = torch.nonzero(counts == 0).flatten()
    relocated = 0
    for cluster, (row, label) in zip(empty.tolist(), zip(partials.far_rows, partials.far_label.tolist())):
        if counts[label] <= 1:
            continue  # taking the only member would empty another cluster
        sums[label] -= row
        counts[label] -= 1
        sums[cluster] = row
        counts[cluster] = 1
        relocated += 1
    centroids = previous.clone()
    filled = counts > 0
    centroids[filled] = sums[filled] / counts[filled, None].to(sums)
    return centroids, relocated


@dataclasses.dataclass
class SampleRows:
    """Rows of a seeded sample of examples gathered by one pass: ``index`` ``[s]``, ``rows`` ``[s, d]``."""

    index: torch.Tensor
    rows: torch.Tensor

    def add_(self, other: SampleRows) -> SampleRows:
        self.index = torch.cat([self.index, other.index])
        self.rows = torch.cat([self.rows, other.rows])
        return self

    def to(self, device: torch.device | str) -> SampleRows:
        return SampleRows(self.index.to(device), self.rows.to(device))


def sample_step(state: PieceState) -> SampleRows:
    """The chunk step gathering the unit rows of the examples whose ``rows["sampled"]`` is set."""
    chosen = torch.nonzero(state.rows["sampled"] > 0).flatten()
    return SampleRows(chosen + state.piece.start, unit_rows(state.g)[chosen])


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) on the rows of ``x`` ``[s, d]``: ``[k, d]``.

    The first centroid is a uniform draw; each next one is drawn with probability proportional to
    the squared distance to the nearest centroid so far. Draws come from ``generator`` (seeded on
    the CPU), so a seed gives the same centroids on every device.
    """
    s = x.shape[0]
    first = int(torch.randint(s, (1,), generator=generator))
    chosen = [first]
    nearest = squared_distances(x, x[first:first + 1])[:, 0]
    for _ in range(1, k):
        total = float(nearest.sum())
        if total <= 0:  # every row coincides with a centroid: draw among the rest uniformly
            weights = torch.ones(s, dtype=torch.float64)
            weights[chosen] = 0
        else:
            weights = nearest.double().cpu()
        index = int(torch.multinomial(weights, 1, generator=generator))
        chosen.append(index)
        nearest = torch.minimum(nearest, squared_distances(x, x[index:index + 1])[:, 0])
    return x[chosen].clone()
