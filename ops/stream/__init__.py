"""Passes over a PEF store, knowing nothing of NPEFF.

An algorithm that passes over a store (the decomposition, coefficient fitting, k-means, SAE training,
perturbation evaluation) is a chunk step plus a small-state step on top of this package:

- :mod:`~npeff.ops.stream.plan`: which pieces stay on the device, in host memory, or stream;
- :mod:`~npeff.ops.stream.load`: pieces as compute tensors (aligned, pinned, kept when resident);
- :mod:`~npeff.ops.stream.schedule`: one pass as a dask graph with a compute thread (:func:`run_pass`);
- :mod:`~npeff.ops.stream.runner`: the :class:`Runner` protocol and :class:`LocalRunner`;
- :mod:`~npeff.ops.stream.distributed`: :class:`DistributedRunner` on a ``dask.distributed`` cluster
  (which cluster: :mod:`~npeff.ops.stream.cluster`);
- :mod:`~npeff.ops.stream.inputs`: device, store and example-status checks.
"""

from npeff.ops.stream.inputs import check_device, ok_mask, require_finalized, usable_mask
from npeff.ops.stream.load import PieceLoader, aligned
from npeff.ops.stream.plan import STREAM_PIECE_BYTES, Piece, ResidencyPlan, parse_bytes, plan_residency
from npeff.ops.stream.runner import LocalRunner, PieceState, Runner, make_runner
from npeff.ops.stream.schedule import PassScheduler, add_partials, run_pass


__all__ = ["STREAM_PIECE_BYTES", "LocalRunner", "PassScheduler", "Piece", "PieceLoader", "PieceState",
           "ResidencyPlan", "Runner", "add_partials", "aligned", "check_device", "make_runner", "ok_mask",
           "parse_bytes", "plan_residency", "require_finalized", "run_pass", "usable_mask"]
