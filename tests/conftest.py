"""Test configuration.

CUDA kernels run on the Numba CUDA simulator unless ``NPEFF_REAL_CUDA=1`` is set (then the same
tests run them on the GPU, and the ``gpu``-marked tests are enabled). The variable must be set
before numba is imported, hence here.
"""

import os

if os.environ.get("NPEFF_REAL_CUDA") != "1":
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import pytest  # noqa: E402

pytest_plugins = ["tests.fixtures", "tests.remote_servers"]  # the tiny-model fixtures, for tests/ops and tests/cli


def pytest_collection_modifyitems(config, items):
    from npeff.cuda_ops import cuda_available

    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a real CUDA GPU (set NPEFF_REAL_CUDA=1 on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_dask_scheduler_from_the_environment(monkeypatch):
    """A ``DASK_SCHEDULER_ADDRESS`` of the machine running the tests would send every decomposition
    to that cluster; tests that want one set it themselves."""
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)


def pytest_sessionfinish(session, exitstatus):
    session.config._npeff_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """The remote-store tests use TensorStore's HTTP transport, which can abort the interpreter's
    shutdown (google/tensorstore#275): once pytest has reported, leave without finalisation."""
    import sys

    location = sys.modules.get("npeff.store.location")
    status = getattr(config, "_npeff_exitstatus", None)
    if location is None or status is None or not location.network_transport_used():
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)
