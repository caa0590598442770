"""Passes on the workers of a ``dask.distributed`` cluster.

Each worker holds one :class:`Partition` (a dask actor) for the whole run: shard i lives on worker
i mod N, read there once, with its per-example state rows. Every pass only the chunk step and the
small shared tensors travel to the workers, and each partition's summed partials travel back.

Which cluster (:func:`~npeff.ops.stream.cluster.resolve_cluster`): ``local:N``, a scheduler file, a scheduler address, a
``distributed.Client``, or, when none is given, ``$DASK_SCHEDULER_ADDRESS``. The workers must run
this process's npeff (:func:`check_worker_versions`); a worker lost mid-run ends the run with a
:class:`~npeff.errors.DecompositionError` naming it (:func:`result_from_worker`), never a hang.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch

from npeff.errors import DecompositionError, InvalidArgumentError
from npeff.ops.stream.cluster import (
    WORKERS_TIMEOUT_SECONDS,
    cluster_kind,
    cluster_label,
    parse_local_workers,
    resolve_cluster,
    scheduler_file_address,
    start_local_cluster,
)
from npeff.ops.stream.load import aligned, scale_examples
from npeff.ops.stream.plan import Piece
from npeff.ops.stream.runner import ChunkStep, P, PieceState, to_device
from npeff.ops.stream.schedule import add_partials

DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}
#: seconds between checks that the worker a call waits on is still in the cluster
WORKER_POLL_SECONDS = 1.0
#: seconds to connect to a scheduler
CONNECT_TIMEOUT_SECONDS = 20


class Partition:
    """The shards that live on one worker, with their per-example state rows and per-piece caches.

    Created on its worker as a dask actor; ``shards`` are the ``(index, start, stop)`` of its shards,
    ``scales`` (optional) one ``[k]`` array per shard multiplying its examples' rows as they are read.

    Notes:
        Memory on the worker: its shards ``[k, r, d]`` in ``dtype`` plus their state rows.
    """

    def __init__(self, path: str, shards: list[tuple[int, int, int]], dtype: str, device: str = "cpu",
                 scales: list | None = None):
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
        self.g = [aligned(scale_examples(torch.from_numpy(store.read(start, stop)).to(device=self.device,
                                                                                      dtype=torch_dtype),
                                         None if scales is None else scales[i]))
                  for i, (_, start, stop) in enumerate(shards)]
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


def check_worker_versions(client, workers: list[str]) -> None:
    """Refuse workers whose ``npeff.__version__`` differs from this process's, or that cannot import npeff.

    One ``client.run`` of ``getattr(npeff, "__version__")``: the module travels by name, so each
    worker imports its own npeff (a light import, without torch).

    Raises:
        InvalidArgumentError: naming each worker that differs and what it has.
    """
    import npeff

    expected = npeff.__version__
    found = client.run(getattr, npeff, "__version__", workers=list(workers), on_error="return")
    wrong = []
    for address in sorted(found):
        version = found[address]
        if isinstance(version, BaseException):
            text = str(version).splitlines()[0] if str(version) else type(version).__name__
            wrong.append(f"{address} cannot import npeff ({text})")
        elif version != expected:
            wrong.append(f"{address} has npeff {version}")
    if wrong:
        shown = "; ".join(wrong[:5]) + (f"; and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        raise InvalidArgumentError(f"the dask workers must run npeff {expected}, as this process does: {shown}; "
                                   f"install npeff {expected} where the workers run and restart them")


def lost_worker_error(address: str, reason: str) -> DecompositionError:
    """The one-line error of a worker lost mid-run, with how to go on."""
    return DecompositionError(
        f"lost the dask worker {address} mid-run ({reason}); the shards and state it held are gone. "
        f"Run again; a decomposition written with --checkpoint-every continues from its last checkpoint "
        f"with: npeff decompose ... --out SAME --resume")


def worker_lost(client, address: str, home=None) -> bool:
    """Whether ``address`` has left the cluster, or the actor ``home`` (its future) was lost with it."""
    if home is not None and home.status in ("error", "lost", "cancelled"):
        return True
    try:
        return address not in client.nthreads()  # {address: threads}: the smallest list of the workers
    except (OSError, RuntimeError):  # the scheduler is unreachable: not a verdict on the worker
        return False


def result_from_worker(client, call, address: str, home=None) -> Any:
    """The result of ``call`` running on the worker ``address``, or an error as soon as it is lost.

    Args:
        client: the ``distributed.Client``.
        call: a future (a task, e.g. an actor being created) or an actor call.
        address: the worker it runs on.
        home: for an actor call, the future of the actor: its worker's loss shows there, and a
            failure to reach the worker (``CommClosedError``, distributed's ``OSError("Unable to
            contact Actor's worker")``) means the worker is gone.

    Raises:
        DecompositionError: the worker died, or left the cluster (a hung worker leaves when it
            misses its heartbeats for ``distributed.scheduler.worker-ttl``, 5 minutes by default).
        Exception: whatever the call itself raised, as it is.

    Notes:
        Checks the cluster every :data:`WORKER_POLL_SECONDS` while waiting (one small RPC to the
        scheduler, its workers' addresses); a call that is done returns at once.
    """
    from distributed import KilledWorker
    from distributed.comm import CommClosedError

    while True:
        try:
            return call.result(timeout=WORKER_POLL_SECONDS)
        except TimeoutError:
            if call.done():
                raise  # the call itself raised TimeoutError
            if worker_lost(client, address, home):
                raise lost_worker_error(address, "it left the cluster") from None
        except Exception as error:
            # an OSError itself (not a subclass such as FileNotFoundError) is distributed's "cannot reach"
            unreachable = home is not None and (isinstance(error, CommClosedError) or type(error) is OSError)
            if unreachable or isinstance(error, KilledWorker) or worker_lost(client, address, home):
                text = " ".join(str(error).split())
                raise lost_worker_error(address, f"{type(error).__name__}: {text}" if text
                                        else type(error).__name__) from None
            raise


class DistributedRunner:
    """One :class:`Partition` actor per worker, shard i on worker i mod N; the data and the state rows
    never move. Implements :class:`~npeff.ops.stream.runner.Runner`; partials arrive on the CPU.

    Args:
        store: the PEF store (its path must be readable by the workers).
        cluster: ``local:N``, a scheduler file, a scheduler address (see :func:`resolve_cluster`) or
            a ``distributed.Client``; npeff closes what it opened, never a client it was given.
        device: the workers' compute device.
        dtype: the compute dtype.
        scale: optional ``[m]`` factors multiplying each example's rows as the workers read them.

    Raises:
        InvalidArgumentError: the scheduler cannot be reached, the cluster has no workers, or a
            worker runs another npeff (at :meth:`start`).
        DecompositionError: a worker was lost mid-run (see :func:`result_from_worker`).
    """

    device = torch.device("cpu")

    def __init__(self, store, *, cluster: Any, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 scale: torch.Tensor | None = None):
        self.store, self.worker_device, self.dtype = store, device, dtype
        self.scale = None if scale is None else torch.as_tensor(scale).cpu()
        self._cluster = None
        self._threads = torch.get_num_threads()  # in-process workers set torch's (process-wide) threads
        self.client, self._owns_client = self._connect(resolve_cluster(cluster), device)
        self.partitions: list = []
        self.ranges: list[list[tuple[int, int]]] = []
        self._homes: list = []  # the actors' futures
        self._addresses: list[str] = []  # the worker of each partition

    def _connect(self, cluster: Any, device: str):
        """``(client, whether npeff opened it)`` for a resolved ``cluster``."""
        from distributed import Client

        if cluster is None:
            raise InvalidArgumentError("a DistributedRunner needs a cluster (local:N, a scheduler file or address)")
        if not isinstance(cluster, str):
            return cluster, False
        kind = cluster_kind(cluster)
        if kind == "local":
            workers = parse_local_workers(cluster)
            self._cluster = start_local_cluster(workers, device)
            client = Client(self._cluster)
            client.wait_for_workers(workers, timeout=WORKERS_TIMEOUT_SECONDS)
            return client, True
        address = scheduler_file_address(cluster) if kind == "file" else cluster
        where = f"at {address} (from {cluster})" if kind == "file" else f"at {address}"
        try:
            if kind == "file":
                return Client(scheduler_file=cluster, timeout=f"{CONNECT_TIMEOUT_SECONDS}s"), True
            return Client(cluster, timeout=f"{CONNECT_TIMEOUT_SECONDS}s"), True
        except OSError as error:
            raise InvalidArgumentError(f"cannot reach the dask scheduler {where}: {error}") from None

    def start(self, rows: dict[str, torch.Tensor]) -> None:
        client = self.client
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_SECONDS)
        except TimeoutError:
            raise InvalidArgumentError(f"the dask cluster at {cluster_label(client)} has no workers after "
                                       f"{WORKERS_TIMEOUT_SECONDS} s; start some (dask worker ADDRESS)") from None
        workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        if not workers:
            raise InvalidArgumentError("the dask cluster has no workers")
        check_worker_versions(client, workers)
        shards = self.store.shards
        homes = [(address, [(s.index, s.start, s.stop) for s in shards[i::len(workers)]])
                 for i, address in enumerate(workers[:len(shards)])]  # shard i on worker i mod N
        futures = [client.submit(Partition, self.store.url, held, DTYPE_NAMES[self.dtype],
                                 self.worker_device, self._scales(held), workers=[address],
                                 allow_other_workers=False, actor=True, pure=False)
                   for address, held in homes]
        self._homes, self._addresses = futures, [address for address, _ in homes]
        self.partitions = [result_from_worker(client, future, address)
                           for future, address in zip(futures, self._addresses)]
        self.ranges = [[(start, stop) for _, start, stop in held] for _, held in homes]
        for i, ranges in enumerate(self.ranges):
            parts = {name: [value[a:b].clone() for a, b in ranges] for name, value in rows.items()}
            self._result(i, self._call(i, "set_rows", parts))

    def _scales(self, held: list[tuple[int, int, int]]) -> list | None:
        """The factors of the shards ``held`` by one partition (None without a scale)."""
        return None if self.scale is None else [self.scale[start:stop].clone() for _, start, stop in held]

    def _call(self, i: int, method: str, *args: Any):
        """``method(*args)`` started on partition ``i``'s actor (distributed refuses to once its worker is lost)."""
        try:
            return getattr(self.partitions[i], method)(*args)
        except RuntimeError as error:
            if worker_lost(self.client, self._addresses[i], self._homes[i]):
                raise lost_worker_error(self._addresses[i], " ".join(str(error).split())) from None
            raise

    def _result(self, i: int, call) -> Any:
        """The result of an actor call on partition ``i``; a lost worker is a :class:`DecompositionError`."""
        return result_from_worker(self.client, call, self._addresses[i], self._homes[i])

    def run_pass(self, step: ChunkStep, *shared: Any, combine: Callable[[P, P], P] = add_partials) -> P:
        shared = to_device(shared, "cpu")
        calls = [self._call(i, "run", step, shared, combine) for i in range(len(self.partitions))]
        total = None
        for i, call in enumerate(calls):
            partials = self._result(i, call)
            total = partials if i == 0 else combine(total, partials)
        return total

    def gather(self, name: str) -> torch.Tensor:
        parts = {}
        for i, ranges in enumerate(self.ranges):
            for (start, _), rows in zip(ranges, self._result(i, self._call(i, "rows_of", name))):
                parts[start] = rows
        return torch.cat([parts[start] for start in sorted(parts)])

    def close(self) -> None:
        self.partitions = []
        if self._homes and not self._owns_client and self.client.status == "running":
            # a client we were given lives on: free the actors now (their handles sit in reference cycles)
            self.client.cancel(self._homes)
        self._homes = []
        # shutting down in-process workers makes distributed log closed comms as errors: noise here
        quiet = logging.getLogger("distributed")
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            if self._owns_client:
                self.client.close()
            if self._cluster is not None:
                self._cluster.close()
        finally:
            quiet.setLevel(level)
            torch.set_num_threads(self._threads)
