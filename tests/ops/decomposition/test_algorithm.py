"""Algorithm 1 (npeff.ops.decomposition.algorithm) against a naive float64 implementation, planted
recovery, and the properties of its steps."""

import numpy as np
import pytest
import torch

from npeff.ops import DecomposeConfig, decompose
from npeff.ops.decomposition import algorithm
from npeff.ops.stream import Piece, PieceState
from tests import tolerances
from tests.ops.decomposition.helpers import best_cosines, make_store, naive_npeff, planted, random_pefs


@pytest.mark.parametrize("budget", [None, 1])
def test_matches_naive_algorithm_step_by_step(tmp_path, budget):
    g = random_pefs()
    store = make_store(tmp_path / "s", g)
    config = DecomposeConfig(n_components=4, warmup_steps=3, joint_steps=4, warmup_lr=0.05, joint_lr=0.02,
                             dtype="float64")
    w0, h0 = algorithm.initial_state(4, 10, 32, torch.ones(10, dtype=torch.float64), config.seed)
    history = naive_npeff(g, w0, h0, warmup=3, joint=4, lr_warm=0.05, lr_joint=0.02)
    result = decompose(store, config=config, memory_budget=budget)
    np.testing.assert_allclose(result["losses"], [loss for _, _, loss in history], **tolerances.FLOAT64_VS_NAIVE)
    w_final, h_final, _ = history[-1]
    norms = h_final.norm(dim=1)
    np.testing.assert_allclose(result["H"], (h_final / norms[:, None]).numpy(), **tolerances.FLOAT64_VS_NAIVE)
    np.testing.assert_allclose(result["W"], (w_final * norms ** 2).numpy(), **tolerances.FLOAT64_VS_NAIVE)


@pytest.mark.slow
def test_planted_components_are_recovered(tmp_path):
    g, w_true, h_true = planted()
    store = make_store(tmp_path / "s", g, shard=32)
    result = decompose(store, 4, warmup_steps=100, joint_steps=1500, warmup_lr=0.02, joint_lr=0.02,
                       seed=3, dtype="float64")
    assert best_cosines(result["H"], h_true.numpy()).mean() >= 0.95
    w_cos = best_cosines(result["W"].T, w_true.numpy().T)
    assert w_cos.mean() >= 0.95
    assert result["losses"][-1] < 0.05 * result["losses"][0]


def piece_state(g, w, mask=None):
    mask = torch.ones(len(g), dtype=g.dtype) if mask is None else mask
    return PieceState(Piece(0, 0, len(g), "device"), g, {"W": w, "mask": mask}, {})


def test_w_update_never_increases_the_loss():
    g = random_pefs(m=12, seed=4)
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(5, 32, generator=gen, dtype=torch.float64) * 0.3
    w = torch.rand(12, 5, generator=gen, dtype=torch.float64)
    _, m = algorithm.gram_terms(h)
    for _ in range(20):
        before = algorithm.chunk_step(piece_state(g, w.clone()), h, m, joint=False).loss
        state = piece_state(g, w)
        after = algorithm.chunk_step(state, h, m, joint=True).loss
        assert float(after) <= float(before) + 1e-12
        w = state.rows["W"]


def test_chunk_step_partials_match_their_definitions():
    """T2 = -4 (W * B)^T G, W^T W and the loss, against the formulas written out per example."""
    g = random_pefs(m=6, r=2, d=16, seed=3)
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(3, 16, generator=gen, dtype=torch.float64)
    w = torch.rand(6, 3, generator=gen, dtype=torch.float64)
    _, m = algorithm.gram_terms(h)
    partials = algorithm.chunk_step(piece_state(g, w.clone()), h, m, joint=False)
    b = torch.einsum("irl,kl->irk", g, h)
    np.testing.assert_allclose(partials.t2, -4 * torch.einsum("ik,irk,irl->kl", w, b, g), **tolerances.FLOAT64_VS_NAIVE)
    np.testing.assert_allclose(partials.wtw, w.T @ w, **tolerances.FLOAT64_VS_NAIVE)
    loss = sum(torch.linalg.matrix_norm(g[i].T @ g[i] - (h.T * w[i]) @ h) ** 2 for i in range(6))
    np.testing.assert_allclose(float(partials.loss), float(loss), **tolerances.FLOAT64_VS_NAIVE)


def test_examples_without_a_pef_keep_zero_coefficients():
    g = random_pefs(m=4, seed=5)
    h = torch.randn(2, 32, dtype=torch.float64)
    w = torch.rand(4, 2, dtype=torch.float64)
    state = piece_state(g, w, mask=torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64))
    algorithm.chunk_step(state, h, algorithm.gram_terms(h)[1], joint=True)
    assert not state.rows["W"][[1, 3]].any() and state.rows["W"][[0, 2]].all()


def test_the_loss_constant_is_computed_once_per_piece():
    g = random_pefs(m=3, seed=6)
    h = torch.randn(2, 32, dtype=torch.float64)
    state = piece_state(g, torch.rand(3, 2, dtype=torch.float64))
    algorithm.chunk_step(state, h, algorithm.gram_terms(h)[1], joint=False)
    state.cache["self_products"] = torch.tensor(100.0, dtype=torch.float64)  # a later pass reuses it
    again = algorithm.chunk_step(state, h, algorithm.gram_terms(h)[1], joint=False)
    fresh = algorithm.chunk_step(piece_state(g, state.rows["W"]), h, algorithm.gram_terms(h)[1], joint=False)
    np.testing.assert_allclose(float(again.loss - fresh.loss), 100.0 - float(algorithm.pef_self_products(g)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_coefficient_update_flushes_subnormals_to_zero(dtype):
    tiny = torch.finfo(dtype).tiny
    w = torch.tensor([[1.0, 0.5, 0.5]], dtype=dtype)
    n = torch.tensor([[2.0, tiny / 64, 1.0]], dtype=dtype)  # the middle coefficient drops below tiny
    m = torch.eye(3, dtype=dtype) * 2.0  # W <- W * N / (2 W) = N / 2
    out = algorithm.coefficient_update(w, n, m)
    assert out[0, 1] == 0.0  # would otherwise be a subnormal number
    np.testing.assert_allclose(out[0, [0, 2]].numpy(), [1.0, 0.5])
    assert not bool(((out > 0) & (out < tiny)).any())


def test_normalise_keeps_every_reconstruction():
    gen = torch.Generator().manual_seed(2)
    w = torch.rand(5, 3, generator=gen, dtype=torch.float64)
    h = torch.randn(3, 8, generator=gen, dtype=torch.float64)
    h[2] = 0.0  # a dead component stays zero, without dividing by zero
    w2, h2 = algorithm.normalise(w, h)
    np.testing.assert_allclose(h2[:2].norm(dim=1), 1.0, **tolerances.FLOAT64_REGROUPED)
    assert not h2[2].any()
    for i in range(5):
        np.testing.assert_allclose((h2.T * w2[i]) @ h2, (h.T * w[i]) @ h, **tolerances.FLOAT64_REGROUPED)
