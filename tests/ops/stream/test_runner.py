"""LocalRunner runs a chunk step over every piece, keeps the per-example state next to the data, and
gives the sums of a plain loop."""

import numpy as np
import pytest
import torch

from npeff.ops.stream import LocalRunner
from tests import tolerances
from tests.ops.stream.helpers import make_store, sum_step


@pytest.mark.parametrize("budget", [None, 1])
def test_local_runner_equals_a_plain_sum(tmp_path, budget):
    store, g = make_store(tmp_path / "s")
    runner = LocalRunner(store, dtype=torch.float64, memory_budget=budget)
    try:
        runner.start({"acc": torch.zeros(11, dtype=torch.float64)})
        for scale in (1.0, 2.0):
            sums = runner.run_pass(sum_step, scale)
            np.testing.assert_allclose(float(sums.total), g.sum(), **tolerances.FLOAT64_REGROUPED)
            assert float(sums.count) == 11
        np.testing.assert_allclose(runner.gather("acc"), 3.0 * g.sum(axis=(1, 2)), **tolerances.FLOAT64_REGROUPED)
        assert all(cache["passes"] == 2 for cache in runner._caches.values())
    finally:
        runner.close()


def test_gather_returns_a_copy(tmp_path):
    store, _ = make_store(tmp_path / "s")
    runner = LocalRunner(store, dtype=torch.float64)
    runner.start({"acc": torch.zeros(11, dtype=torch.float64)})
    runner.gather("acc").fill_(5.0)
    assert not runner.gather("acc").any()
    runner.close()


def test_a_custom_schedule_runs_the_pass(tmp_path):
    """A plain loop in place of the dask graph (as bench/stream_schedule.py compares them)."""
    store, g = make_store(tmp_path / "s")

    def loop(pieces, load, compute, combine):
        total = None
        for piece in pieces:
            part = compute(piece, load(piece))
            total = part if total is None else combine(total, part)
        return total

    runner = LocalRunner(store, dtype=torch.float64, schedule=loop)
    runner.start({"acc": torch.zeros(11, dtype=torch.float64)})
    np.testing.assert_allclose(float(runner.run_pass(sum_step, 1.0).total), g.sum(), **tolerances.FLOAT64_REGROUPED)
    runner.close()


def test_passes_over_kept_pieces_skip_the_graph_and_give_the_same_numbers(tmp_path, monkeypatch):
    """All resident: the first pass (which reads) is a graph, the later ones a loop; same partials."""
    import dask.threaded

    store, g = make_store(tmp_path / "s")
    graphs = []
    real_get = dask.threaded.get
    monkeypatch.setattr(dask.threaded, "get", lambda graph, keys, **kw: graphs.append(1) or real_get(graph, keys, **kw))
    runner = LocalRunner(store, dtype=torch.float64)
    runner.start({"acc": torch.zeros(11, dtype=torch.float64)})
    first, second = (float(runner.run_pass(sum_step, 1.0).total) for _ in range(2))
    runner.close()
    assert len(graphs) == 1 and first == second
