"""Runners: who runs the passes of an algorithm over a store, and where its per-example state lives.

An algorithm over a store is a **chunk step** plus a small-state step. The chunk step sees one
piece at a time, as a :class:`PieceState`::

    def step(state: PieceState, *shared) -> partials      # partials: None, or has add_() and to()

It may update the piece's per-example state rows in place (``state.rows["W"].copy_(...)``) and
keep values computed once per piece in ``state.cache``. ``shared`` are the small tensors every piece
needs (e.g. NPEFF's H), moved to the compute device. A runner runs the step on every piece of a pass
and returns the combined partial sums. :class:`LocalRunner` does it in this process;
:class:`~npeff.ops.stream.distributed.DistributedRunner` on the workers of a dask cluster.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, TypeVar

import torch

from npeff.ops.stream.load import PieceLoader
from npeff.ops.stream.plan import Piece, ResidencyPlan, plan_residency
from npeff.ops.stream.schedule import PassScheduler, add_partials

P = TypeVar("P")


@dataclasses.dataclass
class PieceState:
    """What a chunk step sees of one piece.

    Attributes:
        piece: which examples (``piece.start`` to ``piece.stop``).
        g: the piece's PEFs ``[k, r, d]`` on the compute device.
        rows: the algorithm's per-example state for these examples, ``name -> [k, ...]`` views:
            write them in place.
        cache: values the step computed for this piece in an earlier pass (kept across passes).
    """

    piece: Piece
    g: torch.Tensor
    rows: dict[str, torch.Tensor]
    cache: dict[str, Any]


ChunkStep = Callable[..., Any]
Schedule = Callable[..., Any]  # (pieces, load, compute, combine) -> combined partials


def to_device(value: Any, device: torch.device | str) -> Any:
    """Tensors (and tensors in a tuple) moved to ``device``; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(to_device(item, device) for item in value)
    return value


class Runner(Protocol):
    """Runs the passes of an algorithm; holds its per-example state next to the data."""

    #: where the driver keeps its small state and receives the partial sums
    device: torch.device

    def start(self, rows: dict[str, torch.Tensor]) -> None:
        """Hand over the per-example state, ``name -> [m, ...]``."""

    def run_pass(self, step: ChunkStep, *shared: Any, combine: Callable[[P, P], P] = add_partials) -> P:
        """Run ``step`` on every piece; the partial sums combined, on :attr:`device`."""

    def gather(self, name: str) -> torch.Tensor:
        """The per-example state ``name``, ``[m, ...]``, as it is now (a copy)."""

    def close(self) -> None:
        """Release threads, workers and memory."""


class LocalRunner:
    """Passes in this process: the plan's resident pieces kept, the rest streamed, loads overlapping
    compute (see :mod:`npeff.ops.stream.schedule`); once every piece is kept (all resident, after the
    first pass) a pass is a plain loop on the compute thread, with the same numbers. The per-example
    state is one tensor per name on the compute device; pieces see views of it.

    Args:
        store: the PEF store.
        device, dtype: where and in which dtype pieces are computed on.
        memory_budget, device_memory_budget, reserved_bytes: see
            :func:`~npeff.ops.stream.plan.plan_residency`.
        scale: optional ``[m]`` factors multiplying each example's rows as they are read (see
            :class:`~npeff.ops.stream.load.PieceLoader`).
        schedule: runs one pass, ``(pieces, load, compute, combine) -> partials`` (default: a
            :class:`~npeff.ops.stream.schedule.PassScheduler`, a dask graph).
    """

    def __init__(self, store, *, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 memory_budget: int | None = None, device_memory_budget: int | None = None,
                 reserved_bytes: int = 0, schedule: Schedule | None = None, scale: torch.Tensor | None = None):
        self.device = torch.device(device)
        self.plan: ResidencyPlan = plan_residency(
            store, dtype=dtype, device=device, memory_budget=memory_budget,
            device_memory_budget=device_memory_budget, reserved_bytes=reserved_bytes)
        self.load = PieceLoader(store, device=device, dtype=dtype, scale=scale)
        self._scheduler = PassScheduler() if schedule is None else None
        self._schedule = schedule or self._scheduler
        self.rows: dict[str, torch.Tensor] = {}
        self._caches: dict[int, dict[str, Any]] = {}

    def start(self, rows: dict[str, torch.Tensor]) -> None:
        self.rows = {name: value.to(self.device) for name, value in rows.items()}

    def run_pass(self, step: ChunkStep, *shared: Any, combine: Callable[[P, P], P] = add_partials) -> P:
        def compute(piece: Piece, g: torch.Tensor):
            views = {name: value[piece.start:piece.stop] for name, value in self.rows.items()}
            return step(PieceState(piece, g, views, self._caches.setdefault(piece.start, {})), *shared)

        if self._scheduler is not None and self.load.holds(self.plan.pieces):
            return self._scheduler.run_kept(self.plan.pieces, self.load, compute, combine)
        return self._schedule(self.plan.pieces, self.load, compute, combine)

    def gather(self, name: str) -> torch.Tensor:
        return self.rows[name].clone()

    def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.close()


def make_runner(store, *, device: str, dtype, cluster: str | None = None, memory_budget: int | None = None,
                device_memory_budget: int | None = None, reserved_bytes: int = 0,
                scale: torch.Tensor | None = None) -> Runner:
    """A :class:`~npeff.ops.stream.distributed.DistributedRunner` when ``cluster`` is given, else a
    :class:`LocalRunner`; ``scale`` (``[m]``) multiplies each example's rows as they are read."""
    if cluster:
        from npeff.ops.stream.distributed import DistributedRunner

        return DistributedRunner(store, cluster=cluster, device=device, dtype=dtype, scale=scale)
    return LocalRunner(store, device=device, dtype=dtype, memory_budget=memory_budget,
                       device_memory_budget=device_memory_budget, reserved_bytes=reserved_bytes, scale=scale)

