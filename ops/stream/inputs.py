"""Checks every pass over a store starts with: a usable device, a finished non-empty store, and the
mask of its examples that have a PEF (status ``ok``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from npeff.errors import BackendUnavailableError, InvalidArgumentError
from npeff.store.schema import STATUS_OK


def check_device(device: str, cluster: Any = None) -> None:
    """Refuse a device torch cannot use here (a remote cluster's workers may have GPUs we lack).

    ``cluster`` is as :func:`~npeff.ops.stream.distributed.resolve_cluster` returns it: None,
    ``local:N``, a scheduler file or address, or a ``distributed.Client`` (taken as remote).

    Raises:
        InvalidArgumentError: not a torch device, or not ``cpu``/``cuda``/``cuda:N``.
        BackendUnavailableError: ``cuda`` without a GPU (and no remote cluster).
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidArgumentError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if parsed.type not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"device {device!r} is not supported; use cpu, cuda or cuda:N")
    remote = cluster is not None and not (isinstance(cluster, str) and cluster.startswith("local:"))
    if parsed.type == "cuda" and not remote and not torch.cuda.is_available():
        raise BackendUnavailableError(f"--device {device}: torch sees no CUDA GPU here "
                                      f"(torch {torch.__version__}, CUDA build: {torch.version.cuda is not None})")


def require_finalized(store) -> None:
    """Refuse a store still being built or holding no examples."""
    if store.status != "finalized":
        raise InvalidArgumentError(f"{store.path} is still being built; finalize it first")
    if store.num_examples == 0:
        raise InvalidArgumentError(f"{store.path} holds no examples")


def ok_mask(store, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``[m]``: 1 for the examples whose status is ``ok``, 0 for non-finite or skipped ones."""
    status = np.asarray(store.examples.column("status").to_pylist()) == STATUS_OK
    return torch.from_numpy(status).to(device=device, dtype=dtype)


def usable_mask(store) -> np.ndarray:
    """``[m]`` booleans, True for the examples whose status is ``ok``; refuses a store with none."""
    mask = ok_mask(store).numpy() > 0
    if not mask.any():
        raise InvalidArgumentError(f"no example of {store.path} has status ok")
    return mask
