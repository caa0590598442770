"""The TopK SAE: a planted sparse dictionary recovered, the unit-norm manifold kept, streaming,
the output as a decomposition, bad inputs."""

import numpy as np
import pytest
import torch

from npeff.errors import InvalidArgumentError
from npeff.ops.baselines import SaeConfig, train_sae
from npeff.ops.baselines.sae import TopKSae
from npeff.store import create_store, open_decomposition
from tests import tolerances


def planted_activations(m=6000, d=32, atoms=48, k=3, seed=0):
    """Unit activations, each a positive mix of k unit atoms of a random dictionary."""
    rng = np.random.default_rng(seed)
    dictionary = rng.standard_normal((atoms, d))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)
    x = np.zeros((m, d))
    for i in range(m):
        chosen = rng.choice(atoms, k, replace=False)
        x[i] = (rng.uniform(0.5, 1.5, k)[:, None] * dictionary[chosen]).sum(0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, dictionary


def activation_store(path, x, shard=1000):
    writer = create_store(path, rank=1, dim=x.shape[1], projection={"kind": "none"}, kind="activation",
                          shard_examples=shard, chunk_examples=min(100, shard))
    writer.append(x[:, None, :].astype(np.float32))
    return writer.finalize()


def test_a_planted_dictionary_is_recovered(tmp_path):
    x, dictionary = planted_activations()
    store = activation_store(tmp_path / "a", x)
    train_sae(store, 96, k=3, steps=1000, batch_size=256, out=tmp_path / "sae")
    sae = open_decomposition(tmp_path / "sae")
    best = np.abs(dictionary @ sae.H.T).max(axis=1)  # each planted atom's best learned atom
    assert best.mean() >= 0.9, best
    assert sae.method == "sae" and sae.W.shape == (6000, 96) and sae.H.shape == (96, 32)
    np.testing.assert_allclose(np.linalg.norm(sae.H, axis=1), 1.0, **tolerances.FLOAT32_VS_FLOAT64)
    assert ((sae.W > 0).sum(axis=1) <= 3).all() and (sae.W >= 0).all()
    assert sae.losses[-1] < 0.2 * sae.losses[0]
    assert sae.manifest["details"]["dead_latents"] == int((sae.W.max(axis=0) <= 0).sum())
    # streamed from disk with nothing resident: it still learns the dictionary
    streamed = train_sae(store, 96, k=3, steps=1000, batch_size=256, memory_budget=1)
    assert np.abs(dictionary @ streamed["H"].T).max(axis=1).mean() >= 0.9


def test_the_manifold_and_the_initialisation():
    sae = TopKSae(8, 5, 2, torch.Generator().manual_seed(0))
    torch.testing.assert_close(sae.W_dec, sae.W_enc.T)  # the decoder starts as the encoder's transpose
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    reconstruction, z = sae(x)
    assert ((z > 0).sum(dim=1) <= 2).all()
    ((reconstruction - x) ** 2).sum().backward()
    sae.project_gradients()
    # the projected gradients are tangent: orthogonal to each unit row / column (to float32
    # rounding of sums of O(|grad|) terms)
    for weight, dim in ((sae.W_enc, 1), (sae.W_dec, 0)):
        rounding = 1e-6 * float(weight.grad.abs().max())
        torch.testing.assert_close((weight.grad * weight).sum(dim=dim), torch.zeros(5), atol=rounding, rtol=0)
    with torch.no_grad():
        sae.W_enc.mul_(3.0)
    sae.renormalise()
    torch.testing.assert_close(sae.W_enc.norm(dim=1), torch.ones(5))


def test_topk_encoding_against_a_naive_loop():
    sae = TopKSae(6, 7, 3, torch.Generator().manual_seed(1))
    with torch.no_grad():
        sae.b_enc.copy_(torch.linspace(-0.5, 0.5, 7))
        sae.b_dec.copy_(torch.linspace(0.1, 0.2, 6))
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        z = sae.encode(x)
    for i in range(5):
        with torch.no_grad():
            pre = [float((x[i] - sae.b_dec) @ sae.W_enc[j] + sae.b_enc[j]) for j in range(7)]
        keep = sorted(range(7), key=lambda j: -pre[j])[:3]
        expected = [max(pre[j], 0.0) if j in keep else 0.0 for j in range(7)]
        np.testing.assert_allclose(z[i].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_bad_inputs(tmp_path):
    pef = create_store(tmp_path / "p", rank=1, dim=8, projection={"kind": "external"}, kind="gradient")
    pef.append(np.ones((4, 1, 8), np.float32))
    with pytest.raises(InvalidArgumentError, match="kind 'gradient'.*npeff build --activations"):
        train_sae(pef.finalize(), 4, k=2)
    store = activation_store(tmp_path / "a", np.eye(8)[np.arange(20) % 8], shard=10)
    with pytest.raises(InvalidArgumentError, match="exceeds the activations' dimension"):
        train_sae(store, 16, k=9)
    for bad in (dict(n_latents=0), dict(n_latents=4, k=5), dict(n_latents=4, k=0), dict(n_latents=4, lr=0.0),
                dict(n_latents=4, steps=0), dict(n_latents=4, batch_size=-1)):
        with pytest.raises(InvalidArgumentError):
            SaeConfig(**bad)
