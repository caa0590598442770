"""decompose(): streaming, checkpoints and resume, excluded examples, clusters, bad inputs."""

import numpy as np
import pytest
import torch

from npeff.errors import (BackendUnavailableError, DecompositionError, InvalidArgumentError, StoreCorruptError,
                          StoreExistsError)
from npeff.ops import decompose
from npeff.ops.stream import LocalRunner
from npeff.store import create_store
from tests import tolerances
from tests.ops.decomposition.helpers import make_store, random_pefs

STEPS = dict(warmup_steps=2, joint_steps=4, warmup_lr=0.05, joint_lr=0.05, dtype="float64")


def test_streaming_with_tiny_budget_equals_in_memory(tmp_path):
    store = make_store(tmp_path / "s", random_pefs(m=23, seed=5), shard=5)
    kwargs = dict(warmup_steps=2, joint_steps=5, warmup_lr=0.05, joint_lr=0.05)
    resident = decompose(store, 3, **kwargs)
    streamed = decompose(store, 3, memory_budget="1KB", **kwargs)
    np.testing.assert_array_equal(streamed["W"], resident["W"])
    np.testing.assert_array_equal(streamed["H"], resident["H"])


def test_shards_streamed_in_pieces_equal_whole_shards(tmp_path, monkeypatch):
    import npeff.ops.stream.plan as plan

    store = make_store(tmp_path / "s", random_pefs(m=20, seed=11), shard=10)
    resident = decompose(store, 3, **STEPS)
    monkeypatch.setattr(plan, "STREAM_PIECE_BYTES", 3 * 32 * 8)  # one example per piece
    assert [(p.start, p.stop) for p in plan.plan_residency(store, dtype=torch.float64, memory_budget=1).pieces][:3] \
        == [(0, 1), (1, 2), (2, 3)]
    streamed = decompose(store, 3, memory_budget=1, **STEPS)
    np.testing.assert_allclose(streamed["W"], resident["W"], **tolerances.FLOAT64_REGROUPED)
    np.testing.assert_allclose(streamed["H"], resident["H"], **tolerances.FLOAT64_REGROUPED)


def test_resident_shards_are_read_once(tmp_path, monkeypatch):
    store = make_store(tmp_path / "s", random_pefs(m=12, seed=5), shard=4)
    reads = []
    real_read = store.read
    monkeypatch.setattr(store, "read", lambda *a: reads.append(a) or real_read(*a))
    decompose(store, 3, device_memory_budget=3072, **STEPS)  # one shard on the "device", two in host memory
    assert sorted(reads) == [(0, 4), (4, 8), (8, 12)]
    reads.clear()
    decompose(store, 3, memory_budget=1, **STEPS)  # nothing resident: every shard read every step
    assert len(reads) == 3 * 6


def interrupt_at_pass(monkeypatch, n):
    """Make the n-th pass of every LocalRunner from now on raise KeyboardInterrupt (as Ctrl-C would)."""
    original = LocalRunner.run_pass
    calls = {"n": 0}

    def dying(self, *args, **kw):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(self, *args, **kw)

    monkeypatch.setattr(LocalRunner, "run_pass", dying)
    return lambda: monkeypatch.setattr(LocalRunner, "run_pass", original)


def test_resume_equals_uninterrupted(tmp_path, monkeypatch):
    store = make_store(tmp_path / "s", random_pefs(m=15, seed=6), shard=4)
    kwargs = dict(warmup_steps=3, joint_steps=6, warmup_lr=0.05, joint_lr=0.05)
    reference = decompose(store, 3, out=tmp_path / "ref", **kwargs)
    restore = interrupt_at_pass(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        decompose(store, 3, out=tmp_path / "run", checkpoint_every=2, **kwargs)
    restore()
    assert (tmp_path / "run" / "checkpoint" / "state.npz").is_file()
    resumed = decompose(store, 3, out=tmp_path / "run", resume=True, checkpoint_every=2, **kwargs)
    np.testing.assert_array_equal(resumed.W, reference.W)
    np.testing.assert_array_equal(resumed.H, reference.H)
    np.testing.assert_array_equal(resumed.losses, reference.losses)
    assert not (tmp_path / "run" / "checkpoint").exists()
    assert resumed.manifest["store_fingerprint"] == store.fingerprint


def test_resume_refuses_other_settings(tmp_path, monkeypatch):
    store = make_store(tmp_path / "s", random_pefs(m=8, seed=6), shard=4)
    restore = interrupt_at_pass(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        decompose(store, 2, out=tmp_path / "run", checkpoint_every=1, warmup_steps=2, joint_steps=4)
    restore()
    with pytest.raises(InvalidArgumentError, match="made with other settings"):
        decompose(store, 2, out=tmp_path / "run", resume=True, warmup_steps=2, joint_steps=5)


def test_excluded_examples_have_zero_coefficients(tmp_path):
    store = make_store(tmp_path / "s", random_pefs(m=8, seed=8), status=["ok"] * 6 + ["skipped", "non-finite"])
    result = decompose(store, 2, warmup_steps=1, joint_steps=3, warmup_lr=0.01, joint_lr=0.01)
    assert not result["W"][6:].any() and result["W"][:6].any()


def test_a_corrupt_shard_stops_the_run_with_its_name(tmp_path):
    from npeff.store._layout import shard_data_path

    store = make_store(tmp_path / "s", random_pefs(m=12, seed=2), shard=4)
    path = shard_data_path(store.path, 1)
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match="shard 1"):
        decompose(store, 2, warmup_steps=1, joint_steps=1, memory_budget=1)


def test_a_finished_decomposition_is_not_replaced_unasked(tmp_path):
    store = make_store(tmp_path / "s", random_pefs(m=4), shard=4)
    first = decompose(store, 2, out=tmp_path / "d", warmup_steps=1, joint_steps=1)
    with pytest.raises(StoreExistsError, match="already exists"):
        decompose(store, 2, out=tmp_path / "d", warmup_steps=1, joint_steps=1)
    np.testing.assert_array_equal(np.load(tmp_path / "d" / "W.npy"), first.W)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(StoreExistsError, match="not an npeff decomposition"):
        decompose(store, 2, out=tmp_path / "foreign", warmup_steps=1, joint_steps=1)
    again = decompose(store, 2, out=tmp_path / "d", warmup_steps=1, joint_steps=2, overwrite=True)
    assert again.losses.shape == (3,)


@pytest.fixture
def small_store(tmp_path):
    return make_store(tmp_path / "s", random_pefs(m=4), shard=4)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(n_components=0), InvalidArgumentError, "number of components must be an integer >= 1"),
    (dict(n_components=2, memory_budget="lots"), InvalidArgumentError, "memory budget must look like"),
    (dict(n_components=2, device_memory_budget="most of it"), InvalidArgumentError, "memory budget must look like"),
    (dict(n_components=2, warmup_steps=50, joint_steps=0, warmup_lr=1e6), DecompositionError, "non-finite at step"),
    (dict(n_components=2, device="gpu0"), InvalidArgumentError, "unknown device 'gpu0'"),
    (dict(n_components=2, device="meta"), InvalidArgumentError, "not supported"),
    (dict(n_components=2, checkpoint_every=2), InvalidArgumentError, "checkpoints need an output directory"),
    (dict(n_components=2, cluster="local:x"), InvalidArgumentError, "needs a number of workers"),
    (dict(n_components=2, cluster="local:0"), InvalidArgumentError, "needs N >= 1"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_bad_arguments(small_store, kwargs, error, message):
    with pytest.raises(error, match=message):
        decompose(small_store, **kwargs)


def test_bad_stores(tmp_path, small_store):
    with pytest.raises(InvalidArgumentError, match="holds no examples"):
        decompose(create_store(tmp_path / "e", rank=1, dim=32, projection={"kind": "external"}).finalize(), 2)
    building = create_store(tmp_path / "b", rank=3, dim=32, projection={"kind": "external"})
    building.append(random_pefs(m=2).numpy().astype(np.float32))
    with pytest.raises(InvalidArgumentError, match="still being built"):
        decompose(tmp_path / "b", 2)
    bad = make_store(tmp_path / "nan", random_pefs(m=4), status=["non-finite"] * 4)
    with pytest.raises(InvalidArgumentError, match="no example .* has status ok"):
        decompose(bad, 2)
    with pytest.raises(InvalidArgumentError, match="nothing to resume"):
        decompose(small_store, 2, out=tmp_path / "d2", resume=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_a_gpu_is_a_backend_error(small_store):
    with pytest.raises(BackendUnavailableError, match="torch sees no CUDA GPU here") as raised:
        decompose(small_store, 2, device="cuda")
    assert isinstance(raised.value, InvalidArgumentError)  # what it raised before there was a backend error


@pytest.mark.slow
def test_clusters_equal_one_process(tmp_path):
    store = make_store(tmp_path / "s", random_pefs(m=14, seed=9), shard=4)
    kwargs = dict(warmup_steps=2, joint_steps=3, warmup_lr=0.05, joint_lr=0.05, dtype="float64")
    single = decompose(store, 3, **kwargs)
    threads = torch.get_num_threads()
    spread = decompose(store, 3, cluster="local:2", **kwargs)
    assert torch.get_num_threads() == threads  # in-process workers leave torch's threads as they were
    for name in ("W", "H", "losses"):
        np.testing.assert_allclose(spread[name], single[name], **tolerances.FLOAT64_REDUCED_ELSEWHERE)

    # workers in other processes, reached by address: everything crosses a real (serialising) comm
    from distributed import LocalCluster

    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = decompose(store, 3, cluster=cluster.scheduler_address, **kwargs)
    for name in ("W", "H", "losses"):
        np.testing.assert_allclose(remote[name], single[name], **tolerances.FLOAT64_REDUCED_ELSEWHERE)


@pytest.mark.gpu
def test_on_the_gpu_equals_the_cpu(tmp_path):
    store = make_store(tmp_path / "s", random_pefs(m=14, seed=9), shard=4)
    kwargs = dict(warmup_steps=2, joint_steps=3, warmup_lr=0.05, joint_lr=0.05, dtype="float64")
    on_cpu = decompose(store, 3, **kwargs)
    on_gpu = decompose(store, 3, device="cuda", **kwargs)
    # one shard of 4 float64 PEFs on the device, the others streamed from host memory each step
    streamed = decompose(store, 3, device="cuda", device_memory_budget=3072, **kwargs)
    for name in ("W", "H", "losses"):
        np.testing.assert_allclose(on_gpu[name], on_cpu[name], **tolerances.FLOAT64_REDUCED_ELSEWHERE)
        np.testing.assert_allclose(streamed[name], on_cpu[name], **tolerances.FLOAT64_REDUCED_ELSEWHERE)
