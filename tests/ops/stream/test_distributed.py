"""DistributedRunner: the same passes on the workers of a dask.distributed cluster."""

import numpy as np
import pytest
import torch

from npeff.errors import BackendUnavailableError, InvalidArgumentError
from npeff.ops.stream import make_runner
from npeff.ops.stream.cluster import local_cluster_config, parse_local_workers, start_local_cluster
from tests import tolerances
from tests.ops.stream.helpers import make_store, sum_step


@pytest.mark.slow
def test_distributed_runner_equals_local(tmp_path):
    store, g = make_store(tmp_path / "s")
    threads = torch.get_num_threads()
    runner = make_runner(store, device="cpu", dtype=torch.float64, cluster="local:2")
    try:
        runner.start({"acc": torch.zeros(11, dtype=torch.float64)})
        for scale in (1.0, 2.0):
            sums = runner.run_pass(sum_step, scale)
            np.testing.assert_allclose(float(sums.total), g.sum(), **tolerances.FLOAT64_REDUCED_ELSEWHERE)
            assert float(sums.count) == 11
        np.testing.assert_allclose(runner.gather("acc"), 3.0 * g.sum(axis=(1, 2)),
                                   **tolerances.FLOAT64_REDUCED_ELSEWHERE)
    finally:
        runner.close()
    assert torch.get_num_threads() == threads  # in-process workers leave torch's threads as they were


def test_local_cluster_settings(monkeypatch):
    import builtins

    config = local_cluster_config()
    assert "MALLOC_TRIM_THRESHOLD_" not in config["distributed.nanny.pre-spawn-environ"]
    assert config["distributed.worker.profile.enabled"] is False
    real_import = builtins.__import__

    def no_dask_cuda(name, *args, **kwargs):
        if name == "dask_cuda":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask_cuda)
    with pytest.raises(BackendUnavailableError, match="needs dask-cuda"):
        start_local_cluster(2, "cuda")


@pytest.mark.parametrize("cluster, expected", [("local:3", 3), ("tcp://10.0.0.1:8786", None)])
def test_parse_local_workers(cluster, expected):
    assert parse_local_workers(cluster) == expected


@pytest.mark.parametrize("cluster, message", [("local:", "needs a number of workers"), ("local:two", "needs a number"),
                                              ("local:0", "needs N >= 1"), ("local:-2", "needs N >= 1")])
def test_bad_local_clusters(cluster, message):
    with pytest.raises(InvalidArgumentError, match=message):
        parse_local_workers(cluster)


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path):
    store, _ = make_store(tmp_path / "s")
    with pytest.raises(InvalidArgumentError, match="cannot reach the dask scheduler"):
        make_runner(store, device="cpu", dtype=torch.float64, cluster="tcp://127.0.0.1:1")
