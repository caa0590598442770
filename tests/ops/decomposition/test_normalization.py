"""PEFs normalised as they are read (npeff.ops.decomposition.normalization), against a naive float64
reference that normalises in numpy first; stores that say they are normalised are used as stored."""

import numpy as np
import pytest
import torch

from npeff.errors import DecompositionError, InvalidArgumentError
from npeff.ops import DecomposeConfig, decompose, fit_coefficients
from npeff.ops.decomposition import algorithm, normalization
from npeff.store import create_store, open_decomposition, open_store
from npeff.store.coefficients import open_coefficients
from tests import tolerances
from tests.ops.decomposition.helpers import make_store, naive_npeff, random_pefs

CONFIG = dict(n_components=3, warmup_steps=2, joint_steps=4, warmup_lr=0.05, joint_lr=0.05, dtype="float64")


def unnormalised_pefs(m=12, r=3, d=32, seed=0):
    """PEFs whose norms span six orders of magnitude, exactly float32-representable."""
    gen = torch.Generator().manual_seed(seed)
    g = random_pefs(m=m, r=r, d=d, seed=seed) * 10.0 ** (6 * torch.rand(m, 1, 1, generator=gen, dtype=torch.float64) - 3)
    return g.float().double()


def normalised_in_numpy(g):
    """The reference: each G_i divided by sqrt(||G_i^T G_i||_F) (zero PEFs stay zero), in float64."""
    g = g.numpy()
    norms = np.array([np.linalg.norm(gi.T @ gi) for gi in g])
    safe = np.where(norms > 0, norms, 1.0)
    return torch.from_numpy(g / np.sqrt(safe)[:, None, None]), norms


def naive_reference(g, m, d):
    """Algorithm 1 in float64 from the run's initial state, normalised at the end as the run is."""
    w0, h0 = algorithm.initial_state(3, m, d, torch.ones(m, dtype=torch.float64), 0)
    history = naive_npeff(g, w0, h0, warmup=2, joint=4, lr_warm=0.05, lr_joint=0.05)
    w, h, _ = history[-1]
    norms = h.norm(dim=1)
    return (w * norms ** 2).numpy(), (h / norms[:, None]).numpy(), [loss for _, _, loss in history]


def assert_matches(result, reference):
    """``result``: decompose's dict or a written decomposition."""
    arrays = result if isinstance(result, dict) else {"W": result.W, "H": result.H, "losses": result.losses}
    for name, expected in zip(("W", "H", "losses"), reference):
        np.testing.assert_allclose(arrays[name], expected, **tolerances.FLOAT64_VS_NAIVE)


def plain_store(path, g, **kwargs):
    """A store written through create_store with nothing said about normalisation."""
    writer = create_store(path, rank=g.shape[1], dim=g.shape[2], projection={"kind": "external"},
                          shard_examples=5, chunk_examples=1, **kwargs)
    writer.append(g.numpy().astype(np.float32))
    return writer.finalize()


@pytest.mark.parametrize("budget", [None, 1], ids=["resident", "streamed"])
def test_unnormalised_pefs_are_normalised_as_they_are_read(tmp_path, budget):
    g = unnormalised_pefs()
    store = plain_store(tmp_path / "s", g)
    assert not store.config.normalized
    normalised, norms = normalised_in_numpy(g)
    result = decompose(store, memory_budget=budget, **CONFIG)
    assert_matches(result, naive_reference(normalised, 12, 32))
    np.testing.assert_allclose(result["pef_norms"], norms, **tolerances.FLOAT64_REGROUPED)
    assert result["normalization"] == {"normalize": True, "store": None, "scaled": True}


def test_zero_pefs_stay_zero(tmp_path):
    g = unnormalised_pefs()
    g[4] = 0.0
    result = decompose(plain_store(tmp_path / "s", g), memory_budget=1, **CONFIG)
    assert result["pef_norms"][4] == 0.0 and not result["W"][4].any()
    assert np.isfinite(result["W"]).all() and np.isfinite(result["losses"]).all()


def test_the_store_is_never_copied_normalised(tmp_path):
    """Reads return the store's own numbers after a run: the scale is applied to loaded pieces only."""
    g = unnormalised_pefs()
    store = plain_store(tmp_path / "s", g)
    before = store.read(0, 12).copy()
    decompose(store, memory_budget=1, **CONFIG)
    np.testing.assert_array_equal(store.read(0, 12), before)
    np.testing.assert_array_equal(open_store(tmp_path / "s").read(0, 12), before)
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["s"]


def test_no_normalize_decomposes_pefs_as_stored(tmp_path):
    g = random_pefs(m=12, seed=3) * 1.5  # moderately off unit norm: stable either way
    store = plain_store(tmp_path / "s", g)
    result = decompose(store, normalize=False, **CONFIG)
    assert_matches(result, naive_reference(g.float().double(), 12, 32))
    assert result["pef_norms"] is None
    assert result["normalization"] == {"normalize": False, "store": None, "scaled": False}


@pytest.mark.parametrize("spec", [dict(normalized=True), dict(pef_spec={"normalization": "unit-frobenius"})],
                         ids=["normalized-keyword", "pef-spec"])
def test_a_store_that_says_it_is_normalised_is_not_normalised_again(tmp_path, monkeypatch, spec):
    g = random_pefs(m=12, seed=3) * 1.5  # not unit norm: a second normalisation would show
    store = plain_store(tmp_path / "s", g, **spec)
    monkeypatch.setattr(normalization, "pef_statistics", lambda *a, **k: pytest.fail("measured the PEFs"))
    result = decompose(store, out=tmp_path / "d", **CONFIG)
    assert_matches(result, naive_reference(g.float().double(), 12, 32))
    assert result.meta.normalization == {"normalize": True, "store": "unit-frobenius", "scaled": False}
    assert not (tmp_path / "d" / "pef_norms.npy").exists()


def test_a_built_store_is_used_as_built(tmp_path):
    from npeff.ops import build_store

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    data = [{"input": torch.randn(5), "label": i % 3} for i in range(12)]
    store = build_store(mlp, data, None, tmp_path / "mlp", num_classes=3, projection="none")
    assert store.config.pef_spec["normalization"] == "unit-frobenius" and store.config.normalized
    default, as_stored = decompose(store, **CONFIG), decompose(store, normalize=False, **CONFIG)
    for name in ("W", "H", "losses"):
        np.testing.assert_array_equal(default[name], as_stored[name])
    assert default["normalization"]["scaled"] is False


def test_the_written_decomposition_records_the_norms(tmp_path):
    g = unnormalised_pefs()
    store = plain_store(tmp_path / "s", g)
    written = decompose(store, out=tmp_path / "d", memory_budget=1, **CONFIG)
    _, norms = normalised_in_numpy(g)
    np.testing.assert_allclose(written.array("pef_norms"), norms, **tolerances.FLOAT64_REGROUPED)
    assert written.meta.normalization == {"normalize": True, "store": None, "scaled": True}
    assert written.config["normalize"] is True
    unscaled = decompose(store, out=tmp_path / "e", normalize=False, warmup_steps=1, joint_steps=0, n_components=2)
    assert unscaled.config["normalize"] is False and unscaled.meta.normalization["scaled"] is False


def test_a_resumed_run_must_normalise_as_it_began(tmp_path, monkeypatch):
    from tests.ops.decomposition.test_driver import interrupt_at_pass

    store = plain_store(tmp_path / "s", unnormalised_pefs())
    restore = interrupt_at_pass(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        decompose(store, out=tmp_path / "run", checkpoint_every=1, **CONFIG)
    restore()
    with pytest.raises(InvalidArgumentError, match="made with other settings"):
        decompose(store, out=tmp_path / "run", resume=True, normalize=False, **CONFIG)


def naive_fit(g, h, w, steps):
    """W-only multiplicative updates written out in float64."""
    hh = h @ h.T
    for _ in range(steps):
        b = torch.einsum("irl,kl->irk", g, h)
        w = w * (b ** 2).sum(dim=1) / (w @ (hh * hh))
    return w


@pytest.mark.parametrize("budget", [None, 1], ids=["resident", "streamed"])
def test_fit_normalises_as_decompose_does(tmp_path, budget):
    g = unnormalised_pefs(m=10, seed=4)
    store = plain_store(tmp_path / "s", g)
    decompose(store, out=tmp_path / "d", **CONFIG)
    h = torch.from_numpy(open_decomposition(tmp_path / "d").H)
    fitted = fit_coefficients(tmp_path / "d", store, steps=5, seed=2, dtype="float64", out=tmp_path / "c",
                              memory_budget=budget)
    w0 = torch.rand(10, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    normalised, norms = normalised_in_numpy(g)
    np.testing.assert_allclose(fitted, naive_fit(normalised, h, w0, 5).numpy(), **tolerances.FLOAT64_VS_NAIVE)
    written = open_coefficients(tmp_path / "c")
    assert written.meta.normalization == {"normalize": True, "store": None, "scaled": True}
    np.testing.assert_allclose(np.load(tmp_path / "c" / "pef_norms.npy"), norms, **tolerances.FLOAT64_REGROUPED)
    as_stored = fit_coefficients(tmp_path / "d", store, steps=5, seed=2, dtype="float64", normalize=False)
    np.testing.assert_allclose(as_stored, naive_fit(g, h, w0, 5).numpy(), **tolerances.FLOAT64_VS_NAIVE)


def test_create_store_records_what_it_is_told(tmp_path):
    told = plain_store(tmp_path / "a", random_pefs(m=2), normalized=True).config
    assert told.pef_spec == {"normalization": "unit-frobenius"} and told.normalized
    kept = plain_store(tmp_path / "b", random_pefs(m=2), normalized=False, pef_spec={"task": "x"}).config
    assert kept.pef_spec == {"task": "x", "normalization": "none"} and not kept.normalized
    assert plain_store(tmp_path / "c", random_pefs(m=2)).config.pef_spec is None
    assert not plain_store(tmp_path / "d", random_pefs(m=2), pef_spec={"task": "x"}).config.normalized
    assert plain_store(tmp_path / "e", random_pefs(m=2), pef_spec={"normalization": "unit-l2"}).config.normalized
    with pytest.raises(InvalidArgumentError, match="normalized must be True or False and agree"):
        plain_store(tmp_path / "f", random_pefs(m=2), normalized=True, pef_spec={"normalization": "none"})
    with pytest.raises(InvalidArgumentError, match="normalized must be True or False"):
        plain_store(tmp_path / "g", random_pefs(m=2), normalized="yes")
    with pytest.raises(InvalidArgumentError, match="normalize must be True or False"):
        DecomposeConfig(n_components=2, normalize=1)


@pytest.mark.slow
def test_a_cluster_normalises_as_one_process(tmp_path):
    g = unnormalised_pefs(m=14, seed=6)
    store = plain_store(tmp_path / "s", g)
    spread = decompose(store, cluster="local:2", **CONFIG)
    normalised, norms = normalised_in_numpy(g)
    reference = naive_reference(normalised, 14, 32)
    np.testing.assert_allclose(spread["losses"], reference[2], **tolerances.FLOAT64_VS_NAIVE)
    np.testing.assert_allclose(spread["H"], reference[1], **tolerances.FLOAT64_VS_NAIVE)
    np.testing.assert_allclose(spread["W"], reference[0], **tolerances.FLOAT64_VS_NAIVE)
    assert spread["normalization"]["scaled"]


def poison(store, monkeypatch, example):
    """Make reads of ``store`` return NaN in ``example`` although its status stays ok (as a store whose
    float64 input overflowed float32 storage would)."""
    real_read = store.read

    def read(start, stop):
        data = real_read(start, stop)
        if start <= example < stop:
            data[example - start, 0, 0] = np.nan
        return data

    monkeypatch.setattr(store, "read", read)


def test_non_finite_data_is_named_before_the_first_step(tmp_path, monkeypatch):
    store = plain_store(tmp_path / "s", unnormalised_pefs())
    poison(store, monkeypatch, 7)
    with pytest.raises(DecompositionError) as raised:
        decompose(store, **CONFIG)
    message = str(raised.value)
    assert message.startswith(f"cannot normalise the PEFs: example 7 of {store.path} holds NaN or inf although")
    assert "learning rate" not in message and "\n" not in message


def test_non_finite_data_is_told_apart_from_the_learning_rates(tmp_path, monkeypatch):
    store = make_store(tmp_path / "s", random_pefs(m=8, seed=1))
    poison(store, monkeypatch, 5)
    with pytest.raises(DecompositionError) as raised:
        decompose(store, memory_budget=1, **CONFIG)
    message = str(raised.value)
    assert message.startswith("the loss became non-finite at step 0: example 5 of ")
    assert "holds NaN or inf although its status is ok" in message and "learning rate" not in message


@pytest.mark.parametrize("value, dtype, why", [(1e25, "float32", "whose squares overflow float32"),
                                               (1e12, "float32", "whose ||G^T G||_F^2 = "),
                                               (1e35, "float64", "above 1e+30")])
def test_huge_values_are_told_apart_from_the_learning_rates(tmp_path, value, dtype, why):
    g = random_pefs(m=8, seed=2)
    g[3] *= value
    store = plain_store(tmp_path / "s", g)
    settings = dict(CONFIG, dtype=dtype, warmup_steps=20)
    with pytest.raises(DecompositionError) as raised:
        decompose(store, normalize=False, **settings)
    message = str(raised.value)
    assert "the loss became non-finite at step " in message and "\n" not in message
    assert "hold finite but huge values (up to " in message and f"in example 3, {why}" in message
    assert "run without --no-normalize" in message and "learning rate" not in message
    result = decompose(store, **settings)  # normalised as it is read, the same data decompose
    assert np.isfinite(result["losses"]).all() and result["pef_norms"][3] > value


def test_huge_values_in_a_store_that_says_it_is_normalised(tmp_path):
    g = random_pefs(m=8, seed=2)
    g[3] *= 1e25
    store = plain_store(tmp_path / "s", g, normalized=True)
    with pytest.raises(DecompositionError, match="huge values .* although its manifest says they are normalised"):
        decompose(store, **dict(CONFIG, dtype="float32"))
    # in float64 nothing overflows, but the loss is dominated by one PEF 1e50 times the others
    with pytest.raises(DecompositionError, match=r"lower the learning rates \(the store says its PEFs are "
                                                 r"normalised, but \|\|G_i\^T G_i\|\|_F from 1 to 1e\+50\)"):
        decompose(store, **CONFIG)


def test_high_learning_rates_are_still_the_learning_rates(tmp_path):
    store = make_store(tmp_path / "s", random_pefs(m=8, seed=2))
    with pytest.raises(DecompositionError) as raised:
        decompose(store, 2, warmup_steps=50, joint_steps=0, warmup_lr=1e6)
    message = str(raised.value)
    assert message.startswith("the loss became non-finite at step ") and message.endswith("lower the learning rates")
    unnormalised = plain_store(tmp_path / "u", random_pefs(m=8, seed=2) * 30)
    with pytest.raises(DecompositionError, match=r"lower the learning rates \(the PEFs were used as stored, not "
                                                 r"normalised: \|\|G_i\^T G_i\|\|_F from 900 to 900"):
        decompose(unnormalised, 2, warmup_steps=50, joint_steps=0, warmup_lr=1e3, normalize=False)
