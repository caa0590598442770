"""run_pass: a dask graph of load and compute tasks with a tree reduction, on a compute thread."""

import threading

import pytest
import torch

from npeff.ops.stream import Piece, PassScheduler, add_partials, run_pass


def pieces(n):
    return [Piece(0, i, i + 1, "stream") for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_the_pass_sums_every_piece_once(n):
    loaded = []

    def load(piece):
        loaded.append(piece.start)
        return torch.tensor([float(piece.start)])

    total = run_pass(pieces(n), load, lambda piece, g: g * 10 + 1)
    assert sorted(loaded) == list(range(n))
    assert float(total) == sum(10 * i + 1 for i in range(n))


def test_compute_runs_on_one_thread_and_loads_elsewhere():
    compute_threads, load_threads = set(), set()

    def load(piece):
        load_threads.add(threading.current_thread().name)
        return torch.zeros(1)

    def compute(piece, g):
        compute_threads.add(threading.current_thread().name)
        return torch.ones(1)

    with PassScheduler() as scheduler:
        for _ in range(3):
            assert float(scheduler(pieces(6), load, compute)) == 6.0
    assert len(compute_threads) == 1 and compute_threads.pop().startswith("npeff-compute")
    assert all(name.startswith("npeff-pass") for name in load_threads)


def test_the_graph_has_a_load_and_a_compute_task_per_piece_and_a_tree_of_combines(monkeypatch):
    import dask.threaded

    graphs = []
    real_get = dask.threaded.get
    monkeypatch.setattr(dask.threaded, "get", lambda graph, keys, **kw: graphs.append(dict(graph))
                        or real_get(graph, keys, **kw))
    run_pass(pieces(5), lambda piece: torch.zeros(1), lambda piece, g: torch.ones(1))
    kinds = [key[0] for key in graphs[0]]
    assert kinds.count("npeff-load") == 5 and kinds.count("npeff-compute") == 5
    assert kinds.count("npeff-combine") == 4 and max(key[1] for key in graphs[0] if key[0] == "npeff-combine") == 3


def test_none_partials_combine_to_none():
    assert add_partials(None, None) is None
    assert run_pass(pieces(3), lambda piece: torch.zeros(1), lambda piece, g: None) is None


def test_a_failing_load_fails_the_pass():
    def load(piece):
        if piece.start == 2:
            raise OSError("disk on fire")
        return torch.zeros(1)

    with pytest.raises(OSError, match="disk on fire"):
        run_pass(pieces(4), load, lambda piece, g: torch.ones(1))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 7, 8, 11, 13, 16, 21])
def test_a_pass_of_kept_pieces_reduces_in_the_graphs_order(n):
    """``run_kept`` (no graph, nothing to read) pairs the partial sums exactly as the graph does, so a
    pass gives the same numbers whether or not it had pieces to load."""
    def pair(first, second):
        return (first, second)

    with PassScheduler() as scheduler:
        graph = scheduler(pieces(n), lambda piece: piece.start, lambda piece, g: g, pair)
        kept = scheduler.run_kept(pieces(n), lambda piece: piece.start, lambda piece, g: g, pair)
    assert kept == graph


def test_a_pass_of_kept_pieces_computes_on_the_compute_thread():
    threads = set()

    def compute(piece, g):
        threads.add(threading.current_thread().name)
        return torch.ones(1)

    with PassScheduler() as scheduler:
        assert float(scheduler.run_kept(pieces(4), lambda piece: torch.zeros(1), compute)) == 4.0
    assert len(threads) == 1 and threads.pop().startswith("npeff-compute")
