"""Passes on the workers of a ``dask.distributed`` cluster.

Each worker holds one :class:`Partition` (a dask actor) for the whole run: shard i lives on worker
i mod N, read there once, with its per-example state rows. Every pass only the chunk step and the
small shared tensors travel to the workers, and each partition's summed partials travel back.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch

from npeff.errors import BackendUnavailableError, InvalidArgumentError
from npeff.ops.stream.load import aligned
from npeff.ops.stream.plan import Piece
from npeff.ops.stream.runner import ChunkStep, P, PieceState, to_device
from npeff.ops.stream.schedule import add_partials

DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}


class Partition:
    """The shards that live on one worker, with their per-example state rows and per-piece caches.

    Created on its worker as a dask actor; ``shards`` are the ``(index, start, stop)`` of its shards.

    Notes:
        Memory on the worker: its shards ``[k, r, d]`` in ``dtype`` plus their state rows.
    """

    def __init__(self, path: str, shards: list[tuple[int, int, int]], dtype: str, device: str = "cpu"):
        from npeff.store import open_store

        try:
            from distributed import get_worker

            torch.set_num_threads(max(1, get_worker().state.nthreads))
        except (ImportError, ValueError, AttributeError):
            pass
        store = open_store(path)
        self.device = torch.device(device)
        self.pieces = [Piece(index, start, stop, "device") for index, start, stop in shards]
        torch_dtype = getattr(torch, dtype)
        self.g = [aligned(torch.from_numpy(store.read(start, stop)).to(device=self.device, dtype=torch_dtype))
                  for _, start, stop in shards]
        self.caches: list[dict[str, Any]] = [{} for _ in shards]
        self.rows: dict[str, list[torch.Tensor]] = {}

    def set_rows(self, rows: dict[str, list[torch.Tensor]]) -> None:
        self.rows = {name: [part.to(self.device) for part in parts] for name, parts in rows.items()}

    def run(self, step: ChunkStep, shared: tuple, combine: Callable[[P, P], P]):
        """``step`` on every shard of this partition; the combined partials, on the CPU."""
        shared = to_device(shared, self.device)
        total = None
        for i, (piece, g) in enumerate(zip(self.pieces, self.g)):
            rows = {name: parts[i] for name, parts in self.rows.items()}
            partials = step(PieceState(piece, g, rows, self.caches[i]), *shared)
            total = partials if i == 0 else combine(total, partials)
        return None if total is None else total.to("cpu")

    def rows_of(self, name: str) -> list[torch.Tensor]:
        return [part.cpu() for part in self.rows[name]]


def local_cluster_config() -> dict:
    """Settings of the workers npeff starts itself (``local:N``): they hold large long-lived tensors,
    so glibc keeps its default memory reuse (dask's ``MALLOC_TRIM_THRESHOLD_`` makes every
    temporary a fresh mmap, about 10% of a step), and the statistical profiler (a thread sampling
    every 10 ms) is off."""
    import importlib

    import dask

    importlib.import_module("distributed")  # registers distributed's configuration defaults
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return {"distributed.nanny.pre-spawn-environ": environ, "distributed.worker.profile.enabled": False}


def start_local_cluster(workers: int, device: str):
    """A ``LocalCUDACluster`` (one worker process per GPU) for ``cuda`` when dask-cuda is
    installed; otherwise a ``LocalCluster`` of ``workers`` single-threaded workers inside this
    process (torch releases the GIL, so they use as many cores, without copying the shared tensors
    and the partials between processes). Workers in other processes or machines: start them and
    pass the scheduler's address."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(local_cluster_config()):
        if device.startswith("cuda"):
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError:
                raise BackendUnavailableError(
                    "--cluster local:N with --device cuda needs dask-cuda (pip install dask-cuda)") from None
            return LocalCUDACluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None)


def parse_local_workers(cluster: str) -> int | None:
    """N of ``local:N``; None for a scheduler address."""
    if not cluster.startswith("local:"):
        return None
    try:
        workers = int(cluster.split(":", 1)[1])
    except ValueError:
        raise InvalidArgumentError(f"--cluster local:N needs a number of workers, got {cluster!r}") from None
    if workers < 1:
        raise InvalidArgumentError(f"--cluster local:N needs N >= 1, got {cluster!r}")
    return workers


class DistributedRunner:
    """One :class:`Partition` actor per worker, shard i on worker i mod N; the data and the state rows
    never move. Implements :class:`~npeff.ops.stream.runner.Runner`; partials arrive on the CPU.

    Args:
        store: the PEF store (its path must be readable by the workers).
        cluster: ``local:N`` or a scheduler address.
        device: the workers' compute device.
        dtype: the compute dtype.
    """

    device = torch.device("cpu")

    def __init__(self, store, *, cluster: str, device: str = "cpu", dtype: torch.dtype = torch.float32):
        from distributed import Client

        self.store, self.worker_device, self.dtype = store, device, dtype
        self._cluster = None
        self._threads = torch.get_num_threads()  # in-process workers set torch's (process-wide) threads
        workers = parse_local_workers(cluster)
        if workers is not None:
            self._cluster = start_local_cluster(workers, device)
            self.client = Client(self._cluster)
            self.client.wait_for_workers(workers, timeout=120)
        else:
            try:
                self.client = Client(cluster, timeout="20s")
            except OSError as error:
                raise InvalidArgumentError(f"cannot reach the dask scheduler at {cluster}: {error}") from None
        self.partitions: list = []
        self.ranges: list[list[tuple[int, int]]] = []

    def start(self, rows: dict[str, torch.Tensor]) -> None:
        client = self.client
        client.wait_for_workers(1, timeout=120)
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise InvalidArgumentError("the dask cluster has no workers")
        shards = self.store.shards
        homes = [(address, [(s.index, s.start, s.stop) for s in shards[i::len(workers)]])
                 for i, address in enumerate(workers[:len(shards)])]  # shard i on worker i mod N
        futures = [client.submit(Partition, str(self.store.path), held, DTYPE_NAMES[self.dtype],
                                 self.worker_device, workers=[address], allow_other_workers=False, actor=True,
                                 pure=False)
                   for address, held in homes]
        self.partitions = [future.result() for future in futures]
        self.ranges = [[(start, stop) for _, start, stop in held] for _, held in homes]
        for partition, ranges in zip(self.partitions, self.ranges):
            parts = {name: [value[a:b].clone() for a, b in ranges] for name, value in rows.items()}
            partition.set_rows(parts).result()

    def run_pass(self, step: ChunkStep, *shared: Any, combine: Callable[[P, P], P] = add_partials) -> P:
        shared = to_device(shared, "cpu")
        calls = [partition.run(step, shared, combine) for partition in self.partitions]
        total = None
        for i, call in enumerate(calls):
            partials = call.result()
            total = partials if i == 0 else combine(total, partials)
        return total

    def gather(self, name: str) -> torch.Tensor:
        parts = {}
        for partition, ranges in zip(self.partitions, self.ranges):
            for (start, _), rows in zip(ranges, partition.rows_of(name).result()):
                parts[start] = rows
        return torch.cat([parts[start] for start in sorted(parts)])

    def close(self) -> None:
        self.partitions = []
        # shutting down in-process workers makes distributed log closed comms as errors: noise here
        quiet = logging.getLogger("distributed")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()
        finally:
            quiet.setLevel(level)
            torch.set_num_threads(self._threads)
