"""The default batch size of a build: as many examples as the batch memory holds.

Larger batches are faster per example (every row of a batch shares each projection call, and the
per-example products run as larger matrix products), up to what a batch may hold: its autograd
graph (the tensors the forward pass saves for backward), the recorded layer inputs, the held output
gradients of a row group and its projected rows. Those grow with the examples of a batch, so one
forward pass of a single probe example (the longest of the first few, as batches are padded to
their longest) measures them, and the batch size is the batch memory over that.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import torch

from npeff.memory import format_bytes
from npeff.ops.pef.per_example import ActivationRecorder

#: default bytes a batch may take beyond the model (the ``--batch-memory`` of ``npeff build``)
DEFAULT_BATCH_MEMORY = 1 << 30
#: the largest batch chosen automatically (beyond it a batch is no faster per example on a CPU)
MAX_BATCH_SIZE = 128
#: examples at the start of the build's range among which the longest is the probe
PROBE_CANDIDATES = 64


@dataclasses.dataclass(frozen=True)
class BatchSizeChoice:
    """The automatic batch size and what it was chosen from.

    Attributes:
        batch_size: examples per batch (1 to :data:`MAX_BATCH_SIZE`).
        example_bytes: the measured bytes one example adds to a batch.
        batch_memory: the bytes a batch may take beyond the model.
    """

    batch_size: int
    example_bytes: int
    batch_memory: int

    def describe(self) -> str:
        return (f"batch size {self.batch_size} (about {format_bytes(self.example_bytes)} per example "
                f"within a batch memory of {format_bytes(self.batch_memory)})")


def choose_batch_size(setup, examples: Sequence, start: int, stop: int, batch_memory: int) -> BatchSizeChoice:
    """The largest batch whose estimated memory fits ``batch_memory`` (at least 1, at most
    :data:`MAX_BATCH_SIZE` and the number of examples), measured on one probe example of
    ``examples[start:stop]``; the same for the same range, so a resumed build batches alike.

    Args:
        setup: the build's :class:`~npeff.ops.pef.batch.BatchSetup`.
        batch_memory: bytes a batch may take beyond the model; two ``setup.memory_budget`` (a
            block of per-example gradients and held output gradients) are set aside first.

    Notes:
        Memory: one example's forward pass, released before returning.
    """
    per_example = example_bytes(setup, examples[_probe_index(setup, examples, start, stop)])
    room = batch_memory - 2 * setup.memory_budget
    size = int(min(MAX_BATCH_SIZE, max(1, stop - start), max(1, room // max(1, per_example))))
    return BatchSizeChoice(max(1, size), per_example, batch_memory)


def _probe_index(setup, examples: Sequence, start: int, stop: int) -> int:
    """The example with the longest rendered text among the first :data:`PROBE_CANDIDATES` of the
    range (the first one for tensor inputs, which all have one shape)."""
    candidates = range(start, min(stop, start + PROBE_CANDIDATES))
    if setup.task is None:
        return start
    return max(candidates, key=lambda i: (len(setup.task.render(examples[i])), -i))


def example_bytes(setup, example) -> int:
    """Bytes that ``example`` adds to a batch: the storages its forward pass saves for backward or
    records as layer inputs (the model's parameters left out), its output gradients once more when
    rows go in groups of two or more (one group's earlier rows are held), and its projected rows
    ``[rows, d]`` float32 three times (as the store's buffers hold them)."""
    model = setup.formulation.model
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        keep(tensor)
        return tensor

    forward = setup.formulation.outputs if setup.regression else setup.formulation.log_probs
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
            ActivationRecorder(setup.included) as recorder:
        if setup.task is None:
            inputs = torch.as_tensor(np.asarray(example["input"]))[None].to(setup.dtype)
            forward(inputs)
        else:
            forward([setup.task.render(example)])
    for call in recorder.calls:
        keep(call.inputs)
    outputs = sum(math.prod(call.output_shape) * call.output_dtype.itemsize for call in recorder.calls)
    held = outputs if setup.rows >= 2 else 0
    return sum(storages.values()) + held + 3 * setup.rows * setup.dim * 4
