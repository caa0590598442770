"""Sparse eigendecomposition (ops/decomposition/sed): the draft's toy models, a naive float64
reference of the objective and of Adam, streaming against everything in memory, the low-rank
directions, and the refused inputs."""

import numpy as np
import pytest
import torch

from npeff.errors import InvalidArgumentError
from npeff.ops import PefSpec, build_store
from npeff.ops.decomposition.sed import SedConfig, sparse_eigendecomposition
from npeff.ops.decomposition.sed.directions import LowRankDirections, residual_sample
from npeff.ops.decomposition.sed.toy_models import (XOR_INPUTS, XOR_TARGETS, one_hot_examples, train_superposition,
                                                    train_xor, xor_examples)
from npeff.store import create_store, open_decomposition
from npeff.store.manifest import ParameterLayout
from tests import tolerances


@pytest.fixture(scope="module")
def superposition_store(tmp_path_factory):
    """The toy model of superposition's divergence gradients on 100 one-feature examples per feature."""
    model = train_superposition(seed=0)
    examples = one_hot_examples(100, torch.Generator().manual_seed(2))
    path = tmp_path_factory.mktemp("tms") / "store"
    return build_store(model, examples, None, path, head="regression", projection="none",
                       pef=PefSpec(kind="divergence"), batch_size=64), np.array([e["label"] for e in examples])


def divergence_store(path, g, *, shard_examples=None, projection=None, layout=None, status_ok=None):
    """A divergence store holding rows ``g`` ``[m, d]``."""
    writer = create_store(path, rank=1, dim=g.shape[1], projection=projection or {"kind": "external"},
                          kind="divergence", parameter_layout=layout, shard_examples=shard_examples,
                          chunk_examples=min(8, shard_examples) if shard_examples else None)
    rows = [{"label": i % 3, "prediction": i % 2} for i in range(len(g))]
    writer.append(g[:, None, :].astype(np.float32), rows)
    return writer.finalize()


def test_the_toy_model_of_superposition_gets_one_direction_per_feature(superposition_store, tmp_path):
    store, features = superposition_store
    sed = sparse_eigendecomposition(store, 5, out=tmp_path / "sed")
    assert sed.method == "sed" and sed.W.shape == (500, 5) and sed.H.shape == (5, 15) and (sed.W >= 0).all()
    tops = [features[np.argsort(-sed.W[:, k], kind="stable")[:20]] for k in range(5)]
    assert all(len(set(top)) == 1 for top in tops), tops  # each direction's top examples: one feature
    assert sorted(top[0] for top in tops) == [0, 1, 2, 3, 4]  # and all five features covered
    assert sed.losses[-1] < 0.5 * sed.losses[0]
    details = sed.manifest["details"]
    assert details["directions"] == "full" and details["scale"] > 0
    np.testing.assert_allclose(sed.array("reconstruction") + 0.1 * sed.array("sparsity"), sed.losses,
                               **tolerances.FLOAT32_VS_FLOAT64)


def test_low_rank_directions_on_the_toy_model(superposition_store):
    store, features = superposition_store
    result = sparse_eigendecomposition(store, 5, rank=1)  # W [2, 5] of each direction: one outer product
    tops = [features[np.argsort(-result["W"][:, k], kind="stable")[:20]] for k in range(5)]
    assert all(len(set(top)) == 1 for top in tops) and sorted(top[0] for top in tops) == [0, 1, 2, 3, 4]
    weight = result["H"][:, :10].reshape(5, 2, 5)
    singular = np.linalg.svd(weight, compute_uv=False)
    assert (singular[:, 1] <= 1e-5 * singular[:, 0]).all()  # rank 1 indeed


def test_xor_directions_separate_the_three_active_inputs(tmp_path):
    model = train_xor(seed=1)
    with torch.no_grad():
        np.testing.assert_allclose(model(XOR_INPUTS).numpy(), XOR_TARGETS.numpy(), atol=1e-2)  # it learnt XOR
    store = build_store(model, xor_examples(), None, tmp_path / "xor", head="regression", projection="none",
                        pef=PefSpec(kind="divergence"))
    result = sparse_eigendecomposition(store, 3)
    top_inputs = [XOR_INPUTS[i].tolist() for i in result["W"].argmax(axis=0)]
    assert sorted(top_inputs) == [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], top_inputs


def naive_sed(g, initial, *, l1, lr, steps, betas=(0.9, 0.999), eps=1e-8):
    """Full-batch SED in float64, written out: the loss example by example, Adam by hand."""
    g = torch.as_tensor(g, dtype=torch.float64)
    g = g / (g.pow(2).sum(dim=1).mean()) ** 0.5
    u = initial.clone().requires_grad_(True)
    first = torch.zeros_like(u)
    second = torch.zeros_like(u)
    losses = []
    for t in range(1, steps + 1):
        total = 0
        for x in g:
            codes = torch.stack([x @ row for row in u])
            rebuilt = sum(c * row for c, row in zip(codes, u))
            total = total + ((x - rebuilt) ** 2).sum() + l1 * codes.abs().sum()
        loss = total / len(g)
        (grad,) = torch.autograd.grad(loss, u)
        with torch.no_grad():
            first = betas[0] * first + (1 - betas[0]) * grad
            second = betas[1] * second + (1 - betas[1]) * grad ** 2
            u -= lr * (first / (1 - betas[0] ** t)) / ((second / (1 - betas[1] ** t)).sqrt() + eps)
        losses.append(float(loss.detach()))
    return u.detach(), np.array(losses)


def test_against_a_naive_float64_reference(tmp_path):
    rng = np.random.default_rng(0)
    g = rng.standard_normal((24, 7)) * rng.uniform(0.5, 2.0, (24, 1))
    store = divergence_store(tmp_path / "s", g)
    settings = dict(l1=0.2, lr=0.05, steps=30, batch_size=24, dtype="float64", seed=3)
    ours = sparse_eigendecomposition(store, 4, **settings)
    initial = torch.from_numpy(ours["initial"])
    # the initial directions are rows of the data, drawn by residual sampling
    unit = g / np.linalg.norm(g, axis=1, keepdims=True)
    assert all(np.abs(unit @ row).max() == pytest.approx(1.0) for row in ours["initial"])
    u, losses = naive_sed(store.read()[:, 0, :], initial, l1=0.2, lr=0.05, steps=30)
    np.testing.assert_allclose(ours["losses"], losses, **tolerances.FLOAT64_VS_NAIVE)
    np.testing.assert_allclose(ours["H"], u.numpy().astype(np.float32), **tolerances.FLOAT32_VS_FLOAT64)
    scaled = store.read()[:, 0, :].astype(np.float64) * ours["scale"]
    np.testing.assert_allclose(ours["W"], np.abs(scaled @ u.numpy().T), **tolerances.FLOAT32_VS_FLOAT64)


def test_streaming_with_a_small_budget_equals_all_in_memory(tmp_path):
    rng = np.random.default_rng(1)
    g = rng.standard_normal((200, 12))
    store = divergence_store(tmp_path / "s", g, shard_examples=32)
    assert len(store.shards) > 1
    settings = dict(steps=40, batch_size=16, dtype="float64", seed=5)
    resident = sparse_eigendecomposition(store, 6, **settings)
    streamed = sparse_eigendecomposition(store, 6, memory_budget=1, **settings)
    partly = sparse_eigendecomposition(store, 6, memory_budget=3 * 32 * 12 * 8, **settings)
    for other in (streamed, partly):
        np.testing.assert_allclose(other["losses"], resident["losses"], **tolerances.FLOAT64_REGROUPED)
        np.testing.assert_allclose(other["H"], resident["H"], **tolerances.FLOAT64_REGROUPED)
        np.testing.assert_allclose(other["W"], resident["W"], **tolerances.FLOAT64_REGROUPED)


def test_unusable_examples_are_left_out(tmp_path):
    rng = np.random.default_rng(2)
    g = rng.standard_normal((40, 5))
    writer = create_store(tmp_path / "s", rank=1, dim=5, projection={"kind": "external"}, kind="divergence")
    rows = [{"label": 0, "status": "non-finite" if i % 4 == 0 else "ok"} for i in range(40)]
    writer.append(g[:, None, :].astype(np.float32), rows)
    result = sparse_eigendecomposition(writer.finalize(), 3, steps=5, batch_size=8)
    assert not result["W"][::4].any() and result["W"][1::4].any()
    usable = np.delete(g, np.s_[::4], axis=0)
    assert result["scale"] == pytest.approx((usable ** 2).sum(axis=1).mean() ** -0.5, rel=1e-6)


def test_low_rank_directions_against_explicit_outer_products():
    shapes = [(3, 4), (2, 3, 2), (5,)]
    directions = LowRankDirections(shapes, 2, 3, torch.Generator().manual_seed(0), torch.float64)
    u = directions()
    assert u.shape == (2, 12 + 12 + 5)
    np.testing.assert_allclose(u.norm(dim=1).detach().numpy(), 1.0, **tolerances.FLOAT64_REGROUPED)
    a, b = directions.factors[0]
    c, d, e = directions.factors[1]
    for i in range(2):
        matrix = sum(torch.outer(a[i, k], b[i, k]) for k in range(3))
        cube = sum(torch.einsum("x,y,z->xyz", c[i, k], d[i, k], e[i, k]) for k in range(3))
        expected = torch.cat([matrix.reshape(-1), cube.reshape(-1), directions.factors[2][0][i]])
        torch.testing.assert_close(u[i], expected)


def test_residual_sampling_never_draws_a_row_already_spanned():
    x = torch.tensor([[3.0, 0, 0], [-6.0, 0, 0], [0, 0, 1.0]], dtype=torch.float64)
    for seed in range(20):
        chosen = residual_sample(x, 3, torch.Generator().manual_seed(seed))
        assert len(chosen) == 2  # the rows span two dimensions: a third draw has nothing left
        assert any(torch.equal(row, x[2]) for row in chosen)  # never both of the parallel rows
    assert residual_sample(x * 0, 2, torch.Generator()) == []  # nothing to draw from zeros


@pytest.mark.parametrize("settings,message", [
    (dict(n_components=0), "n components must be an integer >= 1"),
    (dict(n_components=3, l1=-0.1), "L1 weight"),
    (dict(n_components=3, l1=float("inf")), "L1 weight"),
    (dict(n_components=3, lr=0), "learning rate"),
    (dict(n_components=3, lr=1e300), "below 3.4e\\+38"),
    (dict(n_components=3, rank=0), "rank must be"),
    (dict(n_components=3, steps=0), "steps must be"),
])
def test_refused_settings(settings, message):
    with pytest.raises(InvalidArgumentError, match=message):
        SedConfig(**settings)


def test_refused_stores(tmp_path):
    rng = np.random.default_rng(3)
    writer = create_store(tmp_path / "grad", rank=1, dim=6, projection={"kind": "external"}, kind="gradient")
    writer.append(rng.standard_normal((10, 1, 6)).astype(np.float32))
    with pytest.raises(InvalidArgumentError, match="kind 'gradient'.*--divergence-gradient"):
        sparse_eigendecomposition(writer.finalize(), 2, out=tmp_path / "out")
    projected = divergence_store(tmp_path / "div", rng.standard_normal((10, 6)))
    with pytest.raises(InvalidArgumentError, match="--rank needs an unprojected store"):
        sparse_eigendecomposition(projected, 2, rank=1, out=tmp_path / "out")
    zeros = divergence_store(tmp_path / "zeros", np.zeros((10, 6)))
    with pytest.raises(InvalidArgumentError, match="all zero"):
        sparse_eigendecomposition(zeros, 2, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # no empty output left behind
    with pytest.raises(InvalidArgumentError, match="either config or n_components"):
        sparse_eigendecomposition(projected, 2, config=SedConfig(n_components=2))


def test_unprojected_low_rank_store_from_create_store(tmp_path):
    layout = ParameterLayout.from_shapes([("w", (3, 2)), ("b", (2,))])
    rng = np.random.default_rng(4)
    store = divergence_store(tmp_path / "s", rng.standard_normal((30, 8)), projection={"kind": "none"}, layout=layout)
    result = sparse_eigendecomposition(store, 2, rank=1, steps=20, out=tmp_path / "sed")
    assert result.manifest["details"]["directions"] == "low-rank (r = 1 per tensor)"
    h = open_decomposition(tmp_path / "sed").H
    assert h.shape == (2, 8)
    singular = np.linalg.svd(h[:, :6].reshape(2, 3, 2), compute_uv=False)  # the "w" block of each direction
    assert (singular[:, 1] <= 1e-5 * singular[:, 0]).all()  # is one outer product, as the layout says


def test_a_failed_run_keeps_the_decomposition_it_would_replace(tmp_path):
    rng = np.random.default_rng(5)
    good = divergence_store(tmp_path / "good", rng.standard_normal((20, 6)))
    sparse_eigendecomposition(good, 2, steps=5, out=tmp_path / "sed")
    before = open_decomposition(tmp_path / "sed").H.copy()
    zeros = divergence_store(tmp_path / "zeros", np.zeros((10, 6)))
    with pytest.raises(InvalidArgumentError, match="all zero"):
        sparse_eigendecomposition(zeros, 2, out=tmp_path / "sed", overwrite=True)
    huge = divergence_store(tmp_path / "huge", rng.standard_normal((20, 6)))
    with pytest.raises(InvalidArgumentError, match="non-finite at step"):
        sparse_eigendecomposition(huge, 2, lr=1e30, steps=50, out=tmp_path / "sed", overwrite=True)
    np.testing.assert_array_equal(open_decomposition(tmp_path / "sed").H, before)
    with pytest.raises(Exception, match="--overwrite"):
        sparse_eigendecomposition(good, 2, steps=5, out=tmp_path / "sed")
