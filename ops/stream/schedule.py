"""One pass over the pieces of a store as a dask graph: a load task and a compute task per piece, and
a pairwise tree reduction of the compute tasks' partial sums, on dask's threaded scheduler.

Compute tasks hand their work to one compute thread, so contractions take turns (torch already uses
every core, and one OpenMP team serves them all) while the other dask thread loads the next pieces:
reads overlap compute, and dask's ordering keeps the pieces in flight to about three.

A pass with nothing to read (every piece kept in memory, :meth:`PassScheduler.run_kept`) needs no
graph: the pieces run in turn on the compute thread, their partial sums reduced in the graph's
order (:func:`reduce_pairwise`), so the numbers are the same either way.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Sequence, TypeVar

import torch

from npeff.ops.stream.plan import Piece

P = TypeVar("P")

#: threads of the pass's dask scheduler: one loading while the other waits on the compute thread
PASS_THREADS = 2


def add_partials(first: P, second: P) -> P:
    """The default ``combine``: ``first.add_(second)`` (None when the pass returns nothing).

    Partial sums are the graph's own temporaries, so adding in place saves allocating and faulting
    in a fresh result per piece (a ``[C, d]`` tensor in NPEFF, as large as a piece at SST2's shape).
    """
    if first is None:
        return None
    return first.add_(second)


def reduce_pairwise(parts: Iterable[P], combine: Callable[[P, P], P] = add_partials) -> P:
    """``combine`` over ``parts`` in the order of the pass graph's tree reduction (neighbours paired
    level by level, an odd last one carried up), reducing as they arrive: at most ``log2(n) + 1``
    partial sums are held at once."""
    stack: list[tuple[int, P]] = []  # (pieces summed, partial sum), sizes strictly decreasing
    for part in parts:
        size = 1
        while stack and stack[-1][0] == size:
            _, left = stack.pop()
            part, size = combine(left, part), 2 * size
        stack.append((size, part))
    if not stack:
        raise ValueError("a pass needs at least one piece")
    _, total = stack.pop()
    while stack:
        total = combine(stack.pop()[1], total)
    return total


class PassScheduler:
    """Runs passes as dask graphs; holds the thread pools across passes (close it when done)."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(PASS_THREADS, thread_name_prefix="npeff-pass")
        self._compute = ThreadPoolExecutor(1, thread_name_prefix="npeff-compute")

    def _on_compute_thread(self, compute, piece, g):
        return self._compute.submit(compute, piece, g).result()

    def __call__(self, pieces: Sequence[Piece], load: Callable[[Piece], torch.Tensor],
                 compute: Callable[[Piece, torch.Tensor], P], combine: Callable[[P, P], P] = add_partials) -> P:
        """``combine`` over ``compute(piece, load(piece))`` for every piece; see :func:`run_pass`."""
        import dask.threaded

        graph: dict[Any, Any] = {}
        level = []
        for position, piece in enumerate(pieces):
            graph[("npeff-load", position)] = (load, piece)
            graph[("npeff-compute", position)] = (self._on_compute_thread, compute, piece, ("npeff-load", position))
            level.append(("npeff-compute", position))
        depth = 0
        while len(level) > 1:  # pairwise tree reduction of the partial sums
            depth += 1
            paired = []
            for i in range(0, len(level) - 1, 2):
                graph[("npeff-combine", depth, i)] = (combine, level[i], level[i + 1])
                paired.append(("npeff-combine", depth, i))
            if len(level) % 2:
                paired.append(level[-1])
            level = paired
        return dask.threaded.get(graph, level[0], pool=self._pool)

    def run_kept(self, pieces: Sequence[Piece], load: Callable[[Piece], torch.Tensor],
                 compute: Callable[[Piece, torch.Tensor], P], combine: Callable[[P, P], P] = add_partials) -> P:
        """The pass when ``load`` has nothing to read (every piece kept in memory): the pieces in turn
        on the compute thread, without a graph, reduced as the graph would (:func:`reduce_pairwise`).

        Notes:
            At small shapes a step takes tens of milliseconds; a graph costs up to a millisecond
            of Python to build and schedule, and four thread hand-offs. This is one hand-off.
        """
        def loop() -> P:
            return reduce_pairwise((compute(piece, load(piece)) for piece in pieces), combine)

        return self._compute.submit(loop).result()

    def close(self) -> None:
        self._pool.shutdown()
        self._compute.shutdown()

    def __enter__(self) -> PassScheduler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_pass(pieces: Sequence[Piece], load: Callable[[Piece], torch.Tensor],
             compute: Callable[[Piece, torch.Tensor], P], combine: Callable[[P, P], P] = add_partials) -> P:
    """One pass: ``compute(piece, load(piece))`` for every piece, partial sums reduced by ``combine``.

    Args:
        pieces: the pieces, in store order (see :class:`~npeff.ops.stream.plan.ResidencyPlan`).
        load: piece -> its tensor ``[k, r, d]`` (e.g. a :class:`~npeff.ops.stream.load.PieceLoader`).
        compute: ``(piece, g)`` -> partial sums (or None); runs on one compute thread.
        combine: ``(a, b)`` -> their sum, may reuse ``a`` (default :func:`add_partials`).

    Returns:
        The combined partial sums of all pieces.

    Notes:
        Memory: the kept pieces plus about three loaded pieces and their partial sums in flight.
        Repeated passes should share one :class:`PassScheduler` (its threads live across passes).
    """
    if not pieces:
        raise ValueError("a pass needs at least one piece")
    with PassScheduler() as scheduler:
        return scheduler(pieces, load, compute, combine)
