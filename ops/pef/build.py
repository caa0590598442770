"""Building PEF stores: the plan, the example range of a shard, and the build loop that writes
the store one batch at a time (each batch: :mod:`npeff.ops.pef.batch`).

``build_store`` works for Hugging Face causal LMs and sequence classifiers (with a tokenizer), for
any ``torch.nn.Module`` that maps a batch of input tensors to logits (``examples`` then hold
``{"input": tensor, "label": int}``) and, for divergence gradients, for a module with real outputs
(``head="regression"``). The ``npeff build`` command is a thin layer over it.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from npeff.cuda_ops import ProjectionSpec
from npeff.errors import InvalidArgumentError
from npeff.memory import require_memory
from npeff.ops.pef.batch import MAX_STORED_PROBS, BatchSetup, batch_pefs
from npeff.ops.pef.batch_size import DEFAULT_BATCH_MEMORY, choose_batch_size
from npeff.ops.pef.formulations import Formulation, TensorClassifier, TensorRegressor, make_formulation
from npeff.ops.pef.loading import model_identity
from npeff.ops.pef.per_example import MEMORY_BUDGET, select_parameters
from npeff.ops.pef.spec import PefSpec, eps_matrix
from npeff.ops.pef.tasks import TaskError, TaskSpec
from npeff.ops.stream.inputs import check_device
from npeff.ops.stream.plan import parse_bytes
from npeff.progress import log
from npeff.store import PefStore, create_store
from npeff.store._files import refuse_resume_with_overwrite


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """What a build will produce (``npeff build --dry-run`` prints it)."""

    n: int
    num_examples: int
    rank: int
    dim: int
    num_classes: int
    example_range: tuple[int, int]
    parameters: int

    @property
    def store_bytes(self) -> int:
        return self.num_examples * self.rank * self.dim * 4

    def describe(self) -> str:
        return (f"n = {self.n:,} parameters in {self.parameters} tensors; m = {self.num_examples:,} "
                f"examples (range {self.example_range[0]}..{self.example_range[1] - 1}); "
                f"r = {self.rank}; d = {self.dim}; {self.num_classes} classes; "
                f"the store will take about {self.store_bytes / 2**20:,.1f} MiB")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/N"`` -> ``(i, N)`` with ``0 <= i < N``."""
    if text is None:
        return None
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InvalidArgumentError(f"--shard takes i/N (e.g. 0/4), got {text!r}") from None
    if not 0 <= index < count:
        raise InvalidArgumentError(f"--shard i/N needs 0 <= i < N, got {text!r}")
    return index, count


def example_range(total: int, max_examples: int | None, shard: tuple[int, int] | None) -> tuple[int, int]:
    """The deterministic example range of this build: the first ``max_examples``, split N ways."""
    m = total if max_examples is None else min(total, max_examples)
    if shard is None:
        return 0, m
    index, count = shard
    return index * m // count, (index + 1) * m // count


def build_store(
    model: nn.Module,
    examples: Sequence[dict],
    task: TaskSpec | None,
    out: str | Path,
    *,
    tokenizer=None,
    num_classes: int | None = None,
    pef: PefSpec = PefSpec(),
    projection: str = "ssp-v1",
    dim: int = 8192,
    seed: int = 0,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    batch_size: int | None = None,
    batch_memory: int | str | None = None,
    device: str = "cpu",
    max_examples: int | None = None,
    shard: tuple[int, int] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    model_name: str | None = None,
    gguf_file: str | None = None,
    command: str | None = None,
    progress: bool = False,
    backend: str = "auto",
    shard_examples: int | None = None,
    memory_budget: int = MEMORY_BUDGET,
    head: str = "classifier",
    inputs: tuple = (),
) -> PefStore | BuildPlan:
    """Compute the PEFs of ``examples`` under ``model`` and write them to a store at ``out``.

    Args:
        model: a Hugging Face causal LM / sequence classifier (with ``tokenizer``), or any module
            mapping a batch of tensors to logits (``tokenizer=None``, ``num_classes`` given,
            examples ``{"input": tensor, "label": int}``).
        examples: indexable examples (a ``datasets.Dataset`` or a list of dicts).
        task: the formulation (None for tensor models, which are classifiers).
        pef: exact / eps / gradient rows, SVD rank, EPS seed.
        projection: ``"ssp-v1"`` (to ``dim`` dimensions with ``seed``) or ``"none"`` (d = n).
        include, exclude: parameter-name globs (default: all but embeddings and norms).
        batch_size: examples per batch; None: as many as ``batch_memory`` holds (see
            :func:`~npeff.ops.pef.batch_size.choose_batch_size`, at most 128; logged).
        batch_memory: bytes a batch may take beyond the model when the batch size is automatic
            (an int or text like ``"2GB"``; default 1 GiB).
        max_examples, shard: the example range (the first ``max_examples``, part ``i`` of ``N``).
        model_name, gguf_file: recorded in the manifest's model identity (the name or folder the
            model was loaded from, and the GGUF file in it, if any).
        resume: continue an interrupted build; overwrite: replace an existing store.
        dry_run: return the :class:`BuildPlan` without computing anything.
        backend: projection backend (``auto``, ``cpu``, ``cuda``).
        shard_examples: examples per store shard (default: ~128 MiB shards).
        memory_budget: bytes for output gradients and per-tensor per-example gradients at once
            (rows are processed in groups that fit).
        head: ``"classifier"`` (class log-probabilities) or, for a model without a tokenizer,
            ``"regression"``: real outputs ``[B]`` or ``[B, K]`` (examples ``{"input": tensor}``),
            whose only rows are divergence gradients (``pef=PefSpec(kind="divergence")``).
        inputs: the paths the build reads (data file, task file, model folder); a store at,
            around or inside one of them is refused.

    A build that fails before its first shard is committed leaves no store behind (one that
    already committed shards is kept, for ``resume``).

    Returns:
        The finalized store (or the plan for ``dry_run``).

    Notes:
        Memory: the model, one batch's activations (its autograd graph and recorded layer inputs),
        the output gradients of one row while rows go in groups, and one block of per-example
        gradients of at most ``memory_budget`` at a time, plus ``[batch, rows, d]`` projected rows.
        Never ``rows * n`` for the whole model (paper, sec. 2.2.1).
    """
    refuse_resume_with_overwrite(resume, overwrite)
    if batch_size is not None and batch_memory is not None:
        raise InvalidArgumentError("--batch-memory sets the automatic batch size: give it or --batch-size, "
                                   "not both")
    if batch_size is not None and batch_size < 1:
        raise InvalidArgumentError(f"--batch-size must be at least 1, got {batch_size}")
    batch_memory = DEFAULT_BATCH_MEMORY if batch_memory is None else parse_bytes(batch_memory)
    check_device(device)
    model.eval()
    parameter_dtype = next(model.parameters()).dtype
    included, layout = select_parameters(model, include, exclude)
    wanted = {id(item.param) for item in included}
    for param in model.parameters():
        param.requires_grad_(id(param) in wanted)
    formulation = _formulation(model, examples, task, tokenizer, num_classes, device, head, pef)
    regression = isinstance(formulation, TensorRegressor)
    classes = formulation.num_outputs if regression else formulation.num_classes
    if pef.kind == "exact" and classes > MAX_STORED_PROBS:
        raise InvalidArgumentError(f"exact PEFs would have {classes:,} rows (one per class); use --eps R' "
                                   f"or --gradient")
    rank = pef.stored_rank(classes)
    dim, projection_spec = _projection(projection, dim, seed, layout.n_total)
    start, stop = example_range(len(examples), max_examples, shard)
    plan = BuildPlan(layout.n_total, stop - start, rank, dim, classes, (start, stop), len(layout.names))
    if dry_run:
        return plan
    if task is not None and tokenizer is not None:
        task.check_examples(_columns(examples, (*task.fields, task.label_field), start, stop),
                            None if regression else classes, offset=start)
    setup = BatchSetup(
        formulation=formulation, task=task, included=included, layout=layout, pef=pef,
        eps=eps_matrix(pef, classes, dtype=parameter_dtype, device=device), projection=projection_spec,
        dim=dim, backend=backend, dtype=parameter_dtype, memory_budget=memory_budget,
    )
    if batch_size is None:
        choice = choose_batch_size(setup, examples, start, stop, batch_memory)
        batch_size = choice.batch_size
        log.info(choice.describe())
    require_memory(3 * min(batch_size, max(stop - start, 1)) * rank * dim * 4,
                   f"the projected rows of a batch ({batch_size} x {rank} x {dim:,} float32, with the store's "
                   f"shard buffers)", "choose a smaller --dim or --batch-size")

    if regression:
        pef_spec = {"formulation": "regression", "pef": pef.to_dict(), "num_outputs": classes,
                    "divergence": DIVERGENCES["regression"], "normalization": pef.normalization}
    else:
        pef_spec = {
            **(task.to_dict() if task is not None else {"formulation": "classifier"}),
            "pef": pef.to_dict(), "num_classes": classes, "normalization": pef.normalization,
        }
        if pef.kind == "divergence":
            pef_spec["divergence"] = DIVERGENCES["classifier"]
        names = _label_names(model, task, classes)
        if names is not None:
            pef_spec["label_names"] = names
    created = not (Path(out).exists() or Path(out).is_symlink())
    writer = create_store(
        out, rank=rank, dim=dim, projection=projection_spec, kind=STORE_KINDS.get(pef.kind, "lrm-pef"),
        parameter_layout=layout, model=model_identity(model, model_name, gguf_file=gguf_file), pef_spec=pef_spec,
        resume=resume, overwrite=overwrite, command=command, shard_examples=shard_examples,
        extra_provenance={"example_range": [start, stop], "shard": list(shard) if shard else None},
        inputs=inputs,
    )
    try:
        return _compute_into(writer, examples, indices=(start, stop), progress=progress, setup=setup,
                             batch_size=batch_size)
    except BaseException:
        writer.abort()
        if created and writer.num_examples == 0:  # nothing committed: leave no store behind
            shutil.rmtree(out, ignore_errors=True)
        raise


def _compute_into(writer, examples: Sequence[dict], *, indices: tuple[int, int], setup: BatchSetup,
                  batch_size: int, progress: bool) -> PefStore:
    """The PEFs of ``examples[start:stop]`` after those ``writer`` already holds, batch by batch,
    appended to ``writer``; then the store finalized."""
    start, stop = indices
    first = start + writer.num_examples
    from npeff.progress import progress_bar

    bar = progress_bar(total=stop - start, initial=first - start, unit="ex", desc="build", enabled=progress)
    for batch_start in range(first, stop, batch_size):
        rows = list(range(batch_start, min(batch_start + batch_size, stop)))
        writer.append(*batch_pefs(setup, [examples[i] for i in rows], rows))
        bar.update(len(rows))
    bar.close()
    return writer.finalize()


def _formulation(model: nn.Module, examples: Sequence[dict], task: TaskSpec | None, tokenizer,
                 num_classes: int | None, device: str, head: str = "classifier", pef: PefSpec | None = None
                 ) -> Formulation | TensorClassifier | TensorRegressor:
    """The build's forward pass; with a tokenizer, padding is set up and the task's fields are
    checked against the data's columns (before anything is written)."""
    if head not in ("classifier", "regression"):
        raise InvalidArgumentError(f"head must be classifier or regression, got {head!r}")
    if head == "regression":
        if tokenizer is not None or task is not None:
            raise InvalidArgumentError("a regression head is a model without a tokenizer or task, mapping input "
                                       "tensors to real outputs")
        if pef is not None and pef.kind != "divergence":
            raise InvalidArgumentError("a regression head has divergence gradients only: "
                                       "pef=PefSpec(kind='divergence')")
        if not len(examples):
            raise InvalidArgumentError("no examples to build from")
        probe = torch.as_tensor(np.asarray(examples[0]["input"])).to(next(model.parameters()).dtype)
        return TensorRegressor(model, device, probe)
    if tokenizer is None:
        if task is not None and task.formulation != "classifier":
            raise TaskError("models without a tokenizer take the classifier formulation only")
        if num_classes is None:
            raise InvalidArgumentError("give num_classes for a model without a tokenizer")
        return TensorClassifier(model, num_classes, device)
    if task is None:
        raise InvalidArgumentError("a task is needed with a tokenizer")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    formulation = make_formulation(task, model, tokenizer, device)
    columns = examples.column_names if hasattr(examples, "column_names") else (
        set(examples[0]) if len(examples) else set())
    task.check_fields(columns)
    return formulation


def _columns(examples: Sequence[dict], names: tuple, start: int, stop: int) -> dict[str, list]:
    """The values of the fields ``names`` over ``examples[start:stop]`` (a ``datasets.Dataset``
    is read column by column, a list of dicts row by row)."""
    names = [name for name in dict.fromkeys(names) if name is not None]
    if hasattr(examples, "column_names"):
        present = [name for name in names if name in examples.column_names]
        return examples.select_columns(present)[start:stop] if present else {}
    rows = list(itertools.islice(examples, start, stop))
    return {name: [row.get(name) for row in rows] for name in names}


#: the divergence each head's divergence gradient is taken of (recorded in the manifest)
DIVERGENCES = {"classifier": "KL(p || uniform): sum_y stop_grad(p_y log(K p_y)) log p_y",
               "regression": "squared error against a constant output: (grad f)^T 1"}

#: store kind of each PEF kind (the others are low-rank PEFs)
STORE_KINDS = {"gradient": "gradient", "divergence": "divergence"}


def _projection(projection: str, dim: int, seed: int, n_total: int) -> tuple[int, dict]:
    """``(d, projection spec)`` for ``--projection``: ssp-v1 to ``dim`` with ``seed``, or none (d = n)."""
    if projection == "none":
        return n_total, {"kind": "none"}
    if projection == "ssp-v1":
        return dim, ProjectionSpec(seed=seed, d=dim).to_dict()
    raise InvalidArgumentError(f"--projection must be ssp-v1 or none, got {projection!r}")


def _label_names(model: nn.Module, task: TaskSpec | None, classes: int) -> list[str] | None:
    """Names of the classes: the task's label strings, else a classifier's ``id2label`` when set."""
    if task is not None and task.labels:
        return [label.strip() for label in task.labels]
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
    names = [str(id2label.get(i, id2label.get(str(i), ""))) for i in range(classes)]
    if all(names) and names != [f"LABEL_{i}" for i in range(classes)]:
        return names
    return None


__all__ = ["BuildPlan", "build_store", "example_range", "parse_shard"]
