"""Loading the pieces of a pass as compute tensors: resident pieces are read once and kept (on the
device, or in pinned host memory copied over each pass), streamed pieces are read every time."""

from __future__ import annotations

import torch

from npeff.ops.stream.plan import Piece

#: alignment of resident CPU tensors: GEMMs on 16-byte-aligned store reads run about 10% slower
ALIGNMENT = 64


def aligned(g: torch.Tensor) -> torch.Tensor:
    """``g`` in :data:`ALIGNMENT`-byte-aligned memory (a copy when needed). Store reads come back
    16-byte aligned, and CPU GEMMs on them run about 10% slower: worth one copy for data used
    every pass."""
    return g if g.device.type != "cpu" or g.data_ptr() % ALIGNMENT == 0 else g.clone()


def scale_examples(g: torch.Tensor, factors) -> torch.Tensor:
    """``g`` ``[k, r, d]`` with example ``i``'s rows multiplied by ``factors[i]`` (``[k]``, any float
    dtype, numpy or torch), in place; ``g`` as it is when ``factors`` is None. Used to normalise
    PEFs as they are read, without a normalised copy of the store (memory: ``factors`` only)."""
    if factors is None:
        return g
    factors = torch.as_tensor(factors).to(device=g.device, dtype=g.dtype)
    return g.mul_(factors[:, None, None])


class PieceLoader:
    """``loader(piece)`` -> the piece's examples ``[k, r, d]`` as a ``dtype`` tensor on ``device``.

    A resident piece is read from the store on its first load and kept: on the device (tier
    ``device``) or in host memory (tier ``host``, pinned when the device is a GPU, copied over with
    ``non_blocking``). Streamed pieces are read every call. Safe to call from several threads for
    different pieces. With ``scale`` (``[m]``), example ``i`` is multiplied by ``scale[i]`` as it is
    read (:func:`scale_examples`; resident pieces are kept scaled).
    """

    def __init__(self, store, *, device: str, dtype: torch.dtype, scale: torch.Tensor | None = None):
        self.store, self.device, self.dtype = store, torch.device(device), dtype
        self.scale = scale
        self.kept: dict[int, torch.Tensor] = {}  # resident piece start -> its tensor

    def holds(self, pieces) -> bool:
        """Whether every one of ``pieces`` is kept (loading them reads nothing)."""
        return all(piece.start in self.kept for piece in pieces)

    def __call__(self, piece: Piece) -> torch.Tensor:
        kept = self.kept.get(piece.start)
        if kept is not None:
            return kept.to(self.device, non_blocking=True)
        g = torch.from_numpy(self.store.read(piece.start, piece.stop)).to(dtype=self.dtype)
        factors = None if self.scale is None else self.scale[piece.start:piece.stop]
        if piece.tier == "stream":
            return scale_examples(g.to(self.device), factors)
        if piece.tier == "device":
            g = self.kept[piece.start] = aligned(scale_examples(g.to(self.device), factors))
            return g
        host = aligned(scale_examples(g, factors))
        if self.device.type == "cuda":
            host = host.pin_memory()
        self.kept[piece.start] = host
        return host.to(self.device, non_blocking=True)
