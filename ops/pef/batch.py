"""One batch of a build: the forward pass, the objective rows, their projected per-example
gradients, the finished PEFs and the batch's rows of the store's example table."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from npeff.cuda_ops import project
from npeff.ops.pef.formulations import Formulation, TensorClassifier, TensorRegressor
from npeff.ops.pef.per_example import (
    MEMORY_BUDGET,
    ActivationRecorder,
    IncludedParameter,
    projected_row_gradients,
)
from npeff.ops.pef.spec import PefSpec, finish_pefs, objective_rows, regression_divergence_rows
from npeff.ops.pef.tasks import TaskSpec
from npeff.store.manifest import ParameterLayout

#: class probabilities are stored per example up to this many classes (next-token: not at all)
MAX_STORED_PROBS = 4096


@dataclasses.dataclass(frozen=True, kw_only=True)
class BatchSetup:
    """What stays the same over the batches of one build.

    Attributes:
        formulation: the forward pass, texts (or input tensors) to class log-probabilities (or a
            regression head's outputs).
        task: renders examples to texts and reads gold labels (None for tensor models).
        included, layout: the selected parameters and their flat layout (``n`` values).
        pef: which rows; eps: its ``[R', C]`` expectation projection (``kind="eps"`` only).
        projection: the store's projection spec (``{"kind": "none"}`` or an ssp-v1 dict).
        dim: ``d``, the stored row length.
        backend: projection backend (``auto``, ``cpu``, ``cuda``).
        dtype: the model's parameter dtype (tensor inputs are cast to it).
        memory_budget: bytes for output gradients and one tensor's per-example gradients at once.
    """

    formulation: Formulation | TensorClassifier | TensorRegressor
    task: TaskSpec | None
    included: list[IncludedParameter]
    layout: ParameterLayout
    pef: PefSpec
    eps: torch.Tensor | None
    projection: dict
    dim: int
    backend: str = "auto"
    dtype: torch.dtype = torch.float32
    memory_budget: int = MEMORY_BUDGET

    @property
    def rows(self) -> int:
        """Rows computed per example, before any SVD reduction."""
        return self.pef.rows(getattr(self.formulation, "num_classes", 1))

    @property
    def regression(self) -> bool:
        return isinstance(self.formulation, TensorRegressor)


def batch_pefs(setup: BatchSetup, batch: list, indices: list[int]) -> tuple[torch.Tensor, list[dict]]:
    """The finished PEFs of one batch and its example-table records.

    Returns:
        ``(pefs, records)``: ``pefs`` ``[B, stored_rank, d]`` float32 on the CPU, each of unit
        Frobenius norm of ``G^T G`` (divergence gradients as computed); one record per example
        (see :func:`example_records`).
    """
    texts = [setup.task.render(e) for e in batch] if setup.task is not None else None
    g, log_probs = projected_pefs(setup, batch, texts)
    g, norms = finish_pefs(g, setup.pef)
    return g.detach().to("cpu", torch.float32), example_records(batch, texts, indices, setup.task, log_probs, norms)


def projected_pefs(setup: BatchSetup, batch: list, texts: list[str] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected PEF rows ``[B, rows, d]`` of one batch (not yet normalised), and its class
    log-probabilities ``[B, C]`` (None for a regression head).

    Notes:
        Memory: the batch's activations, the ``[B, rows, d]`` output, and about twice
        ``setup.memory_budget`` for the gradients (see :func:`projected_row_gradients`). Without
        a projection the rows stay in float64 for a float64 model (exact references).
    """
    count = len(batch)
    forward = setup.formulation.outputs if setup.regression else setup.formulation.log_probs
    with ActivationRecorder(setup.included) as recorder:
        if texts is None:
            inputs = torch.stack([torch.as_tensor(np.asarray(e["input"])) for e in batch]).to(setup.dtype)
            scores, owner = forward(inputs)
        else:
            scores, owner = forward(texts)
    if setup.regression:
        objectives = regression_divergence_rows(scores)
    else:
        objectives = objective_rows(scores, setup.pef, setup.eps)
    unprojected = setup.projection["kind"] == "none"
    exact_dtype = torch.float64 if unprojected and setup.dtype == torch.float64 else torch.float32
    dim = setup.dim
    out = torch.zeros(count, setup.rows, dim, dtype=exact_dtype, device=scores.device)

    def project_block(block: torch.Tensor, offset: int, row_slice: slice) -> None:
        block = block.detach().view(count, -1, block.shape[1])
        if unprojected:
            out[:, row_slice, offset:offset + block.shape[2]] = block
        else:
            projected = project(block.reshape(-1, block.shape[2]), d=dim, seed=setup.projection["seed"],
                                offset=offset, n_total=setup.layout.n_total, backend=setup.backend)
            out[:, row_slice] += projected.view(count, -1, dim)

    projected_row_gradients(objectives, recorder, setup.included, sequence_owner=owner, num_examples=count,
                            project_block=project_block, memory_budget=setup.memory_budget)
    return out, None if setup.regression else scores.detach()


def example_records(batch: list, texts: list[str] | None, indices: list[int], task: TaskSpec | None,
                    log_probs: torch.Tensor | None, norms: torch.Tensor) -> list[dict]:
    """One example-table record per example: its source id, rendered text, gold label, predicted
    class, class probabilities (up to :data:`MAX_STORED_PROBS` classes) and PEF norm before
    normalisation. ``log_probs`` is ``[B, C]`` (None for a regression head: no prediction, no
    probabilities), ``norms`` ``[B]``."""
    probs = None if log_probs is None else log_probs.exp().to("cpu", torch.float64)
    keep_probs = probs is not None and probs.shape[1] <= MAX_STORED_PROBS
    records = []
    for i, (example, index) in enumerate(zip(batch, indices)):
        records.append({
            "source_id": str(example.get("id", index)) if isinstance(example, dict) else str(index),
            "text": texts[i] if texts is not None else None,
            "label": (task.gold_label(example) if task is not None
                      else (int(example["label"]) if example.get("label") is not None else None)),
            "prediction": None if probs is None else int(probs[i].argmax()),
            "probs": probs[i].tolist() if keep_probs else None,
            "pef_norm": float(norms[i]),
        })
    return records
