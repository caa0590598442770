"""The checks every pass starts with: device, store state, example status."""

import numpy as np
import pytest
import torch

from npeff.errors import BackendUnavailableError, InvalidArgumentError
from npeff.ops.stream import check_device, ok_mask, require_finalized
from npeff.store import create_store, open_store


@pytest.mark.parametrize("device", ["cpu", "cuda:0"])
def test_a_remote_cluster_may_have_gpus_we_lack(device):
    check_device(device, cluster="tcp://10.1.2.3:8786")


@pytest.mark.parametrize("device, error, message", [
    ("gpu0", InvalidArgumentError, "unknown device 'gpu0'"),
    ("meta", InvalidArgumentError, "not supported"),
    ("mps", InvalidArgumentError, "not supported"),
], ids=["unknown", "meta", "mps"])
def test_bad_devices(device, error, message):
    with pytest.raises(error, match=message):
        check_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
@pytest.mark.parametrize("cluster", [None, "local:2"])
def test_cuda_without_a_gpu(cluster):
    with pytest.raises(BackendUnavailableError, match="torch sees no CUDA GPU") as raised:
        check_device("cuda", cluster)
    assert isinstance(raised.value, InvalidArgumentError)  # what it raised before there was a backend error


def test_store_state_and_mask(tmp_path):
    writer = create_store(tmp_path / "s", rank=1, dim=32, projection={"kind": "external"})
    writer.append(np.ones((3, 1, 32), np.float32), [{"status": s} for s in ("ok", "skipped", "ok")])
    with pytest.raises(InvalidArgumentError, match="still being built"):
        require_finalized(open_store(tmp_path / "s"))
    store = writer.finalize()
    require_finalized(store)
    assert ok_mask(store, dtype=torch.float64).tolist() == [1.0, 0.0, 1.0]
    empty = create_store(tmp_path / "e", rank=1, dim=32, projection={"kind": "external"}).finalize()
    with pytest.raises(InvalidArgumentError, match="holds no examples"):
        require_finalized(empty)
