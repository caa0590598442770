"""NPEFF decomposition against a naive in-memory Algorithm 1, planted recovery, streaming, resume."""

import numpy as np
import pytest
import torch

from npeff.errors import IncompatibleStoresError, InvalidArgumentError
from npeff.ops import DecomposeConfig, decompose, fit_coefficients
from npeff.ops.decomposition import DecompositionError, parse_bytes
from npeff.store import create_store, open_decomposition


def naive_npeff(g, w, h, *, warmup, joint, lr_warm, lr_joint):
    """Algorithm 1 written out in float64 on the whole tensor; returns per-step (W, H, loss)."""
    history = []
    m, r, n = g.shape
    for step in range(warmup + joint):
        b = torch.einsum("ijl,kl->ijk", g, h)
        hh = h @ h.T
        if step >= warmup:
            numerator = (b ** 2).sum(dim=1)
            denominator = w @ (hh * hh)
            w = w * numerator / denominator
        loss = sum(torch.linalg.matrix_norm(g[i].T @ g[i] - (h.T * w[i]) @ h) ** 2 for i in range(m))
        t1 = 4 * ((w.T @ w) * hh) @ h
        t2 = -4 * torch.einsum("ji,jki,jkl->il", w, b, g)
        h = h - (lr_joint if step >= warmup else lr_warm) * (t1 + t2)
        history.append((w.clone(), h.clone(), float(loss)))
    return history


def make_store(path, g, *, shard=4, status=None):
    writer = create_store(path, rank=g.shape[1], dim=g.shape[2], projection={"kind": "external"},
                          shard_examples=shard, chunk_examples=1)
    writer.append(g.numpy().astype(np.float32), [{"status": s} for s in status] if status else None)
    return writer.finalize()


def random_pefs(m=10, r=3, d=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(m, r, d, generator=gen, dtype=torch.float64)
    norms = torch.linalg.matrix_norm(g @ g.transpose(1, 2)) ** 0.5
    return (g / norms[:, None, None]).float().double()  # unit Frobenius PEFs, exactly float32-representable


@pytest.mark.parametrize("budget", [None, 1])
def test_matches_naive_algorithm_step_by_step(tmp_path, budget):
    g = random_pefs()
    store = make_store(tmp_path / "s", g)
    config = DecomposeConfig(n_components=4, warmup_steps=3, joint_steps=4, warmup_lr=0.05, joint_lr=0.02,
                             dtype="float64")
    from npeff.ops.decomposition import _initial_state

    w0, h0 = _initial_state(config, 10, 32, torch.ones(10, dtype=torch.float64))
    history = naive_npeff(g, w0, h0, warmup=3, joint=4, lr_warm=0.05, lr_joint=0.02)
    result = decompose(store, config=config, memory_budget=budget)
    np.testing.assert_allclose(result["losses"], [loss for _, _, loss in history], rtol=1e-10)
    w_final, h_final, _ = history[-1]
    norms = h_final.norm(dim=1)
    np.testing.assert_allclose(result["H"], (h_final / norms[:, None]).numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result["W"], (w_final * norms ** 2).numpy(), rtol=1e-9, atol=1e-12)


def planted(m=120, r=3, d=64, c=4, seed=1):
    """PEFs G_i stacking sqrt(w_ij) h_j rows over a few active components (rank <= r)."""
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(c, d, generator=gen, dtype=torch.float64)
    h /= h.norm(dim=1, keepdim=True)
    w = torch.zeros(m, c, dtype=torch.float64)
    g = torch.zeros(m, r, d, dtype=torch.float64)
    for i in range(m):
        active = torch.randperm(c, generator=gen)[: 1 + i % 2]
        for row, j in enumerate(active):
            w[i, j] = 0.5 + torch.rand(1, generator=gen, dtype=torch.float64).item()
            g[i, row] = w[i, j].sqrt() * h[j]
    scale = torch.linalg.matrix_norm(g @ g.transpose(1, 2))
    return g / scale.sqrt()[:, None, None], w / scale[:, None], h


def best_cosines(found, truth):
    found = found / np.linalg.norm(found, axis=1, keepdims=True)
    truth = truth / np.linalg.norm(truth, axis=1, keepdims=True)
    return np.abs(truth @ found.T).max(axis=1)


def test_planted_components_are_recovered(tmp_path):
    g, w_true, h_true = planted()
    store = make_store(tmp_path / "s", g, shard=32)
    result = decompose(store, 4, warmup_steps=100, joint_steps=1500, warmup_lr=0.02, joint_lr=0.02,
                       seed=3, dtype="float64")
    assert best_cosines(result["H"], h_true.numpy()).mean() >= 0.95
    w_cos = best_cosines(result["W"].T, w_true.numpy().T)
    assert w_cos.mean() >= 0.95
    assert result["losses"][-1] < 0.05 * result["losses"][0]


def test_w_update_never_increases_the_loss():
    from npeff.ops.decomposition import chunk_step, pef_self_products

    g = random_pefs(m=12, seed=4)
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(5, 32, generator=gen, dtype=torch.float64) * 0.3
    w = torch.rand(12, 5, generator=gen, dtype=torch.float64)
    hh = h @ h.T
    constant = pef_self_products(g)
    for _ in range(20):
        _, _, _, before = chunk_step(g, w, h, hh * hh, False, constant)
        w, _, _, after = chunk_step(g, w, h, hh * hh, True, constant)
        assert float(after) <= float(before) + 1e-12


def test_streaming_with_tiny_budget_equals_in_memory(tmp_path):
    g = random_pefs(m=23, seed=5)
    store = make_store(tmp_path / "s", g, shard=5)
    kwargs = dict(warmup_steps=2, joint_steps=5, warmup_lr=0.05, joint_lr=0.05)
    resident = decompose(store, 3, **kwargs)
    streamed = decompose(store, 3, memory_budget="1KB", **kwargs)
    np.testing.assert_array_equal(streamed["W"], resident["W"])
    np.testing.assert_array_equal(streamed["H"], resident["H"])


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    g = random_pefs(m=15, seed=6)
    store = make_store(tmp_path / "s", g, shard=4)
    kwargs = dict(warmup_steps=3, joint_steps=6, warmup_lr=0.05, joint_lr=0.05)
    reference = decompose(store, 3, out=tmp_path / "ref", **kwargs)
    import npeff.ops.decomposition as module

    original = module._LocalRunner.iteration
    calls = {"n": 0}

    def dying(self, *args):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(module._LocalRunner, "iteration", dying)
    with pytest.raises(KeyboardInterrupt):
        decompose(store, 3, out=tmp_path / "run", checkpoint_every=2, **kwargs)
    monkeypatch.setattr(module._LocalRunner, "iteration", original)
    assert (tmp_path / "run" / "checkpoint" / "state.npz").is_file()
    resumed = decompose(store, 3, out=tmp_path / "run", resume=True, checkpoint_every=2, **kwargs)
    np.testing.assert_array_equal(resumed.W, reference.W)
    np.testing.assert_array_equal(resumed.H, reference.H)
    np.testing.assert_array_equal(resumed.losses, reference.losses)
    assert not (tmp_path / "run" / "checkpoint").exists()
    assert resumed.manifest["store_fingerprint"] == store.fingerprint


def test_fit_recovers_coefficients_for_known_h(tmp_path):
    g, w_true, h_true = planted(m=40, seed=7)
    store = make_store(tmp_path / "s", g, shard=16)
    decomposition = decompose(store, 4, out=tmp_path / "d", warmup_steps=1, joint_steps=1, dtype="float64")
    from npeff.store.decomposition import save_array

    save_array(tmp_path / "d" / "H.npy", h_true.numpy())  # pretend the decomposition found the truth
    coefficients = fit_coefficients(tmp_path / "d", store, steps=300, dtype="float64", out=tmp_path / "c")
    np.testing.assert_allclose(coefficients, w_true.numpy(), atol=2e-3)
    assert np.load(tmp_path / "c" / "W.npy").shape == (40, 4)
    assert decomposition.H.shape == (4, 64)


def test_excluded_examples_have_zero_coefficients(tmp_path):
    g = random_pefs(m=8, seed=8)
    store = make_store(tmp_path / "s", g, status=["ok"] * 6 + ["skipped", "non-finite"])
    result = decompose(store, 2, warmup_steps=1, joint_steps=3, warmup_lr=0.01, joint_lr=0.01)
    assert not result["W"][6:].any() and result["W"][:6].any()


def test_bad_inputs(tmp_path):
    g = random_pefs(m=4)
    store = make_store(tmp_path / "s", g)
    with pytest.raises(InvalidArgumentError, match="number of components must be an integer >= 1"):
        decompose(store, 0)
    with pytest.raises(InvalidArgumentError, match="holds no examples"):
        decompose(create_store(tmp_path / "e", rank=1, dim=32, projection={"kind": "external"}).finalize(), 2)
    bad = make_store(tmp_path / "nan", g, status=["non-finite"] * 4)
    with pytest.raises(InvalidArgumentError, match="no example .* has status ok"):
        decompose(bad, 2)
    with pytest.raises(InvalidArgumentError, match="memory budget must look like"):
        decompose(store, 2, memory_budget="lots")
    assert parse_bytes("2GB") == 2 * 10**9 and parse_bytes("512MiB") == 512 * 2**20
    with pytest.raises(DecompositionError, match="non-finite at step"):
        decompose(store, 2, warmup_steps=50, joint_steps=0, warmup_lr=1e6)
    decompose(store, 2, out=tmp_path / "d", warmup_steps=1, joint_steps=1)
    other = create_store(tmp_path / "o", rank=3, dim=32, projection={"kind": "ssp-v1", "seed": 1},
                         shard_examples=4, chunk_examples=1)
    other.append(g.numpy().astype(np.float32))
    with pytest.raises(IncompatibleStoresError, match="does not share the projection"):
        fit_coefficients(tmp_path / "d", other.finalize())
    with pytest.raises(InvalidArgumentError, match="nothing to resume"):
        decompose(store, 2, out=tmp_path / "d2", resume=True)
    from npeff.errors import StoreExistsError

    with pytest.raises(StoreExistsError, match="already exists"):
        decompose(store, 2, out=tmp_path / "d", warmup_steps=1, joint_steps=1)
    assert open_decomposition(tmp_path / "d").W.shape == (4, 2)
    with pytest.raises(InvalidArgumentError, match="unknown device 'gpu0'"):
        decompose(store, 2, device="gpu0")
    with pytest.raises(InvalidArgumentError, match="not supported"):
        fit_coefficients(tmp_path / "d", store, device="meta")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidArgumentError, match="torch sees no CUDA GPU here"):
            decompose(store, 2, device="cuda")


def test_local_cluster_settings(monkeypatch):
    import builtins

    from npeff.ops.decomposition import _local_cluster_config, _start_local_cluster

    config = _local_cluster_config()
    assert "MALLOC_TRIM_THRESHOLD_" not in config["distributed.nanny.pre-spawn-environ"]
    assert config["distributed.nanny.pre-spawn-environ"]["OMP_NUM_THREADS"] == 1
    assert config["distributed.worker.profile.enabled"] is False
    real_import = builtins.__import__

    def no_dask_cuda(name, *args, **kwargs):
        if name == "dask_cuda":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask_cuda)
    with pytest.raises(InvalidArgumentError, match="needs dask-cuda"):
        _start_local_cluster(2, "cuda")


@pytest.mark.slow
def test_local_cluster_equals_one_process(tmp_path):
    g = random_pefs(m=14, seed=9)
    store = make_store(tmp_path / "s", g, shard=4)
    kwargs = dict(warmup_steps=2, joint_steps=3, warmup_lr=0.05, joint_lr=0.05, dtype="float64")
    single = decompose(store, 3, **kwargs)
    threads = torch.get_num_threads()
    spread = decompose(store, 3, cluster="local:2", **kwargs)
    assert torch.get_num_threads() == threads  # in-process workers leave torch's threads as they were
    np.testing.assert_allclose(spread["W"], single["W"], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(spread["H"], single["H"], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(spread["losses"], single["losses"], rtol=1e-10)

    # workers in other processes, reached by address: everything crosses a real (serialising) comm
    from distributed import LocalCluster

    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = decompose(store, 3, cluster=cluster.scheduler_address, **kwargs)
    np.testing.assert_allclose(remote["W"], single["W"], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(remote["H"], single["H"], rtol=1e-10, atol=1e-13)


def test_cli_decompose_and_fit(tmp_path):
    from click.testing import CliRunner

    from npeff.cli.main import cli

    g, _, _ = planted(m=24, seed=10)
    make_store(tmp_path / "s", g, shard=8)
    runner = CliRunner()
    result = runner.invoke(cli, ["decompose", str(tmp_path / "s"), "--out", str(tmp_path / "d"), "-C", "4",
                                 "--warmup-steps", "5", "--joint-steps", "20", "--warmup-lr", "0.01",
                                 "--joint-lr", "0.01", "--memory-budget", "4KB", "--checkpoint-every", "10"])
    assert result.exit_code == 0, result.output
    assert "decomposed 24 examples into 4 components" in result.output
    decomposition = open_decomposition(tmp_path / "d")
    assert decomposition.W.shape == (24, 4) and decomposition.losses.shape == (25,)
    assert decomposition.manifest["provenance"]["command"].startswith("npeff decompose")
    np.testing.assert_allclose(np.linalg.norm(decomposition.H, axis=1), 1.0, rtol=1e-5)
    fitted = runner.invoke(cli, ["fit", str(tmp_path / "d"), str(tmp_path / "s"), "--out", str(tmp_path / "c"),
                                 "--steps", "5"])
    assert fitted.exit_code == 0 and "fitted coefficients [24, 4]" in fitted.output
    bad = runner.invoke(cli, ["decompose", str(tmp_path / "s"), "--out", str(tmp_path / "x"), "-C", "0"])
    assert bad.exit_code == 1 and bad.output.startswith("Error: the number of components")
    missing = runner.invoke(cli, ["fit", str(tmp_path / "nope"), str(tmp_path / "s"), "--out", str(tmp_path / "y")])
    assert missing.exit_code == 1 and "no decomposition at" in missing.output


def test_streamed_shards_are_read_in_pieces(tmp_path, monkeypatch):
    """Shards larger than a streaming piece are computed piece by piece; results agree."""
    import npeff.ops.decomposition as module

    g = random_pefs(m=20, seed=11)
    store = make_store(tmp_path / "s", g, shard=10)
    kwargs = dict(warmup_steps=2, joint_steps=4, warmup_lr=0.05, joint_lr=0.05, dtype="float64")
    resident = decompose(store, 3, **kwargs)
    monkeypatch.setattr(module, "STREAM_PIECE_BYTES", 3 * 32 * 8)  # 1 example per piece
    cache = module.ChunkCache(store, device="cpu", dtype=torch.float64, budget=1, n_components=3)
    assert [(a, b) for _, a, b, _ in cache.pieces()][:3] == [(0, 1), (1, 2), (2, 3)]
    streamed = decompose(store, 3, memory_budget=1, **kwargs)
    np.testing.assert_allclose(streamed["W"], resident["W"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(streamed["H"], resident["H"], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_coefficient_update_flushes_subnormals_to_zero(dtype):
    from npeff.ops.decomposition import coefficient_update

    tiny = torch.finfo(dtype).tiny
    w = torch.tensor([[1.0, 0.5, 0.5]], dtype=dtype)
    n = torch.tensor([[2.0, tiny / 64, 1.0]], dtype=dtype)  # the middle coefficient drops below tiny
    m = torch.eye(3, dtype=dtype) * 2.0  # W <- W * N / (2 W) = N / 2
    out = coefficient_update(w, n, m)
    assert out[0, 1] == 0.0  # would otherwise be a subnormal number
    np.testing.assert_allclose(out[0, [0, 2]].numpy(), [1.0, 0.5])
    assert not bool(((out > 0) & (out < tiny)).any())


def test_each_pass_is_a_dask_graph(tmp_path, monkeypatch):
    import dask.threaded

    g = random_pefs(m=12, seed=2)
    store = make_store(tmp_path / "s", g, shard=4)  # 3 shards
    graphs = []
    real_get = dask.threaded.get

    def recording_get(graph, keys, **kwargs):
        graphs.append(dict(graph))
        return real_get(graph, keys, **kwargs)

    monkeypatch.setattr(dask.threaded, "get", recording_get)
    decompose(store, 2, warmup_steps=1, joint_steps=1, memory_budget=1)
    assert len(graphs) == 2  # one graph per step
    kinds = sorted(key[0] for key in graphs[0])
    assert kinds.count("npeff-load") == 3 and kinds.count("npeff-chunk") == 3 and kinds.count("npeff-sum") == 2


def test_a_corrupt_shard_stops_the_run_with_its_name(tmp_path):
    from npeff.errors import StoreCorruptError
    from npeff.store._layout import shard_data_path

    store = make_store(tmp_path / "s", random_pefs(m=12, seed=2), shard=4)
    path = shard_data_path(store.path, 1)
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match="shard 1"):
        decompose(store, 2, warmup_steps=1, joint_steps=1, memory_budget=1)


def test_resident_chunks_beyond_the_device_budget_stay_in_host_memory(tmp_path, monkeypatch):
    """The two tiers of residency (device, then host). On a CPU both are host memory, so this
    checks the bookkeeping and that results do not change; the copies themselves need a GPU."""
    import npeff.ops.decomposition as module

    g = random_pefs(m=12, seed=5)
    store = make_store(tmp_path / "s", g, shard=4)  # 3 shards of 4 * 3 * 32 float64 = 3072 bytes
    cache = module.ChunkCache(store, device="cpu", dtype=torch.float64, budget=None, device_budget=3072)
    assert cache.on_device == {0: True, 1: False, 2: False} and cache.device_bytes == 3072
    kwargs = dict(warmup_steps=2, joint_steps=3, warmup_lr=0.05, joint_lr=0.05, dtype="float64")
    everything = decompose(store, 3, **kwargs)
    loads = []
    real_load = module.ChunkCache.load
    monkeypatch.setattr(module.ChunkCache, "load", lambda self, *a: loads.append(a) or real_load(self, *a))
    reads = []
    real_read = store.read
    monkeypatch.setattr(store, "read", lambda *a: reads.append(a) or real_read(*a))
    tiered = decompose(store, 3, device_memory_budget=3072, **kwargs)
    np.testing.assert_allclose(tiered["W"], everything["W"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(tiered["H"], everything["H"], rtol=1e-12, atol=1e-15)
    assert len(loads) == 3 * 5 and sorted(reads) == [(0, 4), (4, 8), (8, 12)]  # resident: read once
    with pytest.raises(InvalidArgumentError, match="memory budget must look like"):
        decompose(store, 3, device_memory_budget="most of it")
