"""Which ``dask.distributed`` cluster a pass runs on: ``--cluster`` (``local:N``, a scheduler file,
a scheduler address), a ``distributed.Client`` given in Python, or ``$DASK_SCHEDULER_ADDRESS``;
the checks of those arguments, and the workers npeff starts itself for ``local:N``."""

from __future__ import annotations

import json
import os
from typing import Any

from npeff.errors import BackendUnavailableError, InvalidArgumentError

#: dask's own variable for the scheduler of the default client, honoured when no cluster is given
SCHEDULER_ADDRESS_VARIABLE = "DASK_SCHEDULER_ADDRESS"
#: address schemes whose location is ``host:port``
HOST_PORT_SCHEMES = ("tcp", "tls", "ws", "wss")
#: seconds to wait for the workers of a cluster
WORKERS_TIMEOUT_SECONDS = 120


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
                    "--cluster local:N with --device cuda needs dask-cuda: pip install 'npeff[cuda]'") from None
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


def resolve_cluster(cluster: Any = None) -> Any:
    """Where the passes run: ``cluster`` as given, else ``$DASK_SCHEDULER_ADDRESS``, else None (here).

    A string is checked at once, so that a mistake fails before any work:

    - ``local:N``: N workers npeff starts in this process (see :func:`start_local_cluster`);
    - a scheduler file (what ``dask scheduler --scheduler-file F`` writes): an existing file, or a
      path ending in ``.json`` or holding a ``/``;
    - otherwise a scheduler address, ``tcp://host:8786`` (or ``host:8786``, ``tls://...``).

    A ``distributed.Client`` is used as it is (and never closed by npeff).

    Returns:
        The client or the stripped string; None to run in this process.

    Raises:
        InvalidArgumentError: a malformed ``local:N`` or address, a missing or malformed scheduler
            file, or something that is neither a string nor a client.
    """
    source = "--cluster"
    if cluster is None or (isinstance(cluster, str) and not cluster.strip()):
        cluster = os.environ.get(SCHEDULER_ADDRESS_VARIABLE, "").strip() or None
        source = SCHEDULER_ADDRESS_VARIABLE
        if cluster is None:
            return None
    if isinstance(cluster, str):
        cluster = cluster.strip()
        kind = cluster_kind(cluster)
        if kind == "local":
            parse_local_workers(cluster)
        elif kind == "file":
            scheduler_file_address(cluster, source)
        else:
            check_address(cluster, source)
        return cluster
    if not is_client(cluster):
        raise InvalidArgumentError(f"cluster must be local:N, a scheduler file, a scheduler address or a "
                                   f"distributed.Client, got a {type(cluster).__name__}")
    if cluster.status not in ("running", "connecting", "newly-created"):
        raise InvalidArgumentError(f"the distributed.Client passed as cluster is {cluster.status}; pass an open one")
    return cluster


def is_client(value: Any) -> bool:
    """Whether ``value`` is a ``distributed.Client`` (distributed is imported only for non-strings)."""
    if value is None or isinstance(value, str):
        return False
    from distributed import Client

    return isinstance(value, Client)


def cluster_kind(cluster: str) -> str:
    """``local`` (``local:N``), ``file`` (a scheduler file) or ``address``; see :func:`resolve_cluster`."""
    if cluster.startswith("local:"):
        return "local"
    if "://" in cluster:
        return "address"
    if os.path.isfile(cluster) or cluster.endswith(".json") or "/" in cluster or os.sep in cluster:
        return "file"
    return "address"


def scheduler_file_address(path: str, source: str = "--cluster") -> str:
    """The scheduler address written in the scheduler file at ``path`` (JSON with an ``address``)."""
    how = f"a dask scheduler writes it with: dask scheduler --scheduler-file {path}"
    if not os.path.isfile(path):
        raise InvalidArgumentError(f"{source} {path}: no scheduler file there ({how})")
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidArgumentError(f"{source} {path} is not a dask scheduler file ({reason}); {how}") from None
    address = content.get("address") if isinstance(content, dict) else None
    if not isinstance(address, str) or not address:
        raise InvalidArgumentError(f"{source} {path} is not a dask scheduler file (it has no \"address\"); {how}")
    problem = address_problem(address)
    if problem:
        raise InvalidArgumentError(f"{source} {path} is not a dask scheduler file (its address {address!r}: "
                                   f"{problem}); {how}")
    return address


def address_problem(address: str) -> str | None:
    """Why ``address`` cannot be a scheduler address (an unknown scheme, ``host:port`` without a
    port), or None."""
    from distributed.comm import registry
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address, strict=False)
        registry.get_backend(scheme)
        if scheme in HOST_PORT_SCHEMES:
            host, _ = parse_host_port(location)
            if not host:
                return "no host"
    except (ValueError, TypeError) as error:
        return str(error)
    return None


def check_address(address: str, source: str = "--cluster") -> None:
    """Refuse what cannot be a scheduler address (see :func:`address_problem`)."""
    problem = address_problem(address)
    if problem:
        raise InvalidArgumentError(f"{source} {address!r} is neither local:N, a scheduler file nor a scheduler "
                                   f"address like tcp://host:8786 ({problem})")


def cluster_label(cluster: Any) -> str | None:
    """What a manifest records of the cluster: the string as given, a client's scheduler address."""
    if cluster is None or isinstance(cluster, str):
        return cluster
    return str(cluster.scheduler.address)
