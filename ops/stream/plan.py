"""The residency plan of a pass over a store: which pieces stay on the compute device, which stay in
(pinned) host memory, and which stream from disk every pass. Computed once, before the first pass.

Shards are kept resident in store order while they fit the memory budget; the rest are cut into
pieces of at most :data:`STREAM_PIECE_BYTES` (whole inner chunks), read again every pass. Resident
shards live on the compute device while they fit the device budget, the others in host memory,
copied over each pass.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch

from npeff.errors import InvalidArgumentError

#: streamed shards are read in pieces of at most this many bytes (whole inner chunks)
STREAM_PIECE_BYTES = 32 << 20

#: pieces in flight while streaming: the one computed on, one loaded and waiting, one being loaded
PIECES_IN_FLIGHT = 3

#: share of a GPU's free memory that resident shards may take when no device budget is given
DEVICE_MEMORY_SHARE = 0.9

Tier = Literal["device", "host", "stream"]


def parse_bytes(text: str | int | None) -> int | None:
    """A memory budget: ``"2GB"``, ``"512MiB"``, ``"1e9"`` or an int -> bytes (None stays None).

    Parsed by :func:`dask.utils.parse_bytes`; empty, negative and non-finite budgets are refused.
    """
    if text is None:
        return None
    if not isinstance(text, (int, str)) or isinstance(text, bool):
        raise InvalidArgumentError(f"memory budget must be a number of bytes or text like 2GB, got {text!r}")
    if isinstance(text, int):
        value = text
    else:
        from dask.utils import parse_bytes as dask_parse_bytes

        try:
            value = dask_parse_bytes(text.strip()) if text.strip() else None
        except (ValueError, TypeError, OverflowError):
            value = None
        if value is None or not math.isfinite(value):
            raise InvalidArgumentError(f"memory budget must look like 2GB, 512MiB or 1e9, got {text!r}")
    if value < 0:
        raise InvalidArgumentError(f"memory budget must not be negative, got {text!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class Piece:
    """Examples ``[start, stop)`` of shard ``shard``, loaded as one tensor ``[stop - start, r, d]``.

    ``tier`` says where it lives between passes: ``device`` (kept on the compute device), ``host``
    (kept in host memory, pinned on a GPU machine) or ``stream`` (read from disk every pass).
    """

    shard: int
    start: int
    stop: int
    tier: Tier

    @property
    def resident(self) -> bool:
        return self.tier != "stream"

    @property
    def num_examples(self) -> int:
        return self.stop - self.start


@dataclasses.dataclass(frozen=True)
class ResidencyPlan:
    """Where each piece of a pass lives, and the bytes that takes.

    Attributes:
        pieces: every piece of a pass, in store order.
        piece_examples: examples per streamed piece.
        resident_bytes: bytes of the resident shards (device and host).
        device_bytes: of those, bytes kept on the compute device.
        in_flight_bytes: bytes of the streamed pieces in flight at once (0 when nothing streams).
    """

    pieces: tuple[Piece, ...]
    piece_examples: int
    resident_bytes: int
    device_bytes: int
    in_flight_bytes: int

    def summary(self) -> str:
        from dask.utils import format_bytes

        tiers = {tier: sum(p.num_examples for p in self.pieces if p.tier == tier) for tier in ("device", "host", "stream")}
        return (f"{tiers['device']:,} examples on the device ({format_bytes(self.device_bytes)}), "
                f"{tiers['host']:,} in host memory ({format_bytes(self.resident_bytes - self.device_bytes)}), "
                f"{tiers['stream']:,} streamed from disk")


def plan_residency(store, *, dtype: torch.dtype, device: str = "cpu", memory_budget: int | None = None,
                   device_memory_budget: int | None = None, reserved_bytes: int = 0,
                   piece_bytes: int | None = None) -> ResidencyPlan:
    """Plan a pass over ``store`` (anything with ``shards``, ``rank``, ``dim``, ``config.chunk_examples``).

    Args:
        dtype: the compute dtype the pieces are loaded as.
        device: the compute device.
        memory_budget: bytes the pass may hold (resident shards, ``reserved_bytes`` and the pieces
            in flight); None keeps everything resident.
        device_memory_budget: bytes of resident shards kept on the device; None means all of them
            on a CPU, and :data:`DEVICE_MEMORY_SHARE` of a GPU's free memory less
            ``reserved_bytes`` and the pieces in flight.
        reserved_bytes: bytes the algorithm itself holds (its per-example state and temporaries),
            taken off both budgets.
        piece_bytes: the most bytes of one streamed piece (default :data:`STREAM_PIECE_BYTES`).

    Notes:
        Memory of the pass: ``resident_bytes + in_flight_bytes`` plus what the algorithm reserves.
    """
    piece_bytes = STREAM_PIECE_BYTES if piece_bytes is None else piece_bytes
    per_example = store.rank * store.dim * torch.empty((), dtype=dtype).element_size()
    chunk = store.config.chunk_examples
    piece_examples = max(chunk, piece_bytes // per_example // chunk * chunk)
    shards = store.shards
    sizes = [shard.num_examples * per_example for shard in shards]
    largest_piece = min(piece_examples, max(shard.num_examples for shard in shards)) * per_example
    in_flight = PIECES_IN_FLIGHT * largest_piece
    budget = memory_budget
    if budget is not None:
        budget -= reserved_bytes
        if sum(sizes) > budget:
            budget -= in_flight
    device_budget = device_memory_budget
    if device_budget is None and torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        device_budget = int(DEVICE_MEMORY_SHARE * free) - reserved_bytes - in_flight
    pieces: list[Piece] = []
    used = on_device = 0
    for shard, size in zip(shards, sizes):
        if budget is None or used + size <= budget:
            used += size
            tier: Tier = "device" if device_budget is None or on_device + size <= device_budget else "host"
            on_device += size if tier == "device" else 0
            pieces.append(Piece(shard.index, shard.start, shard.stop, tier))
        else:
            pieces += [Piece(shard.index, start, min(start + piece_examples, shard.stop), "stream")
                       for start in range(shard.start, shard.stop, piece_examples)]
    streams = any(not piece.resident for piece in pieces)
    return ResidencyPlan(tuple(pieces), piece_examples, used, on_device, in_flight if streams else 0)
