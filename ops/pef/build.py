"""Building PEF stores: a model, examples and a task formulation in, a PEF store out.

``build_store`` works for Hugging Face causal LMs and sequence classifiers (with a tokenizer) and
for any ``torch.nn.Module`` that maps a batch of input tensors to logits (``examples`` then hold
``{"input": tensor, "label": int}``). The ``npeff build`` command is a thin layer over it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from npeff.cuda_ops import ProjectionSpec, project
from npeff.errors import InvalidArgumentError
from npeff.ops.pef.formulations import TensorClassifier, make_formulation
from npeff.ops.pef.spec import PefSpec, eps_matrix, finish_pefs, objective_rows
from npeff.ops.pef.per_example import (
    MEMORY_BUDGET,
    ActivationRecorder,
    projected_row_gradients,
    select_parameters,
)
from npeff.ops.pef.tasks import TaskError, TaskSpec
from npeff.store import ModelIdentity, create_store
from npeff.store import PefStore

#: class probabilities are stored per example up to this many classes (next-token: not at all)
MAX_STORED_PROBS = 4096


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


def model_identity(model: nn.Module, name: str | None) -> ModelIdentity:
    config = getattr(model, "config", None)
    config_text = config.to_json_string(use_diff=False) if hasattr(config, "to_json_string") else repr(model)
    return ModelIdentity(
        name=name or type(model).__name__,
        revision=getattr(config, "_commit_hash", None) if config is not None else None,
        config_hash=hashlib.sha256(config_text.encode()).hexdigest()[:16],
    )


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
    batch_size: int = 16,
    device: str = "cpu",
    max_examples: int | None = None,
    shard: tuple[int, int] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    model_name: str | None = None,
    command: str | None = None,
    progress: bool = False,
    backend: str = "auto",
    shard_examples: int | None = None,
    memory_budget: int = MEMORY_BUDGET,
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
        max_examples, shard: the example range (the first ``max_examples``, part ``i`` of ``N``).
        resume: continue an interrupted build; overwrite: replace an existing store.
        dry_run: return the :class:`BuildPlan` without computing anything.
        backend: projection backend (``auto``, ``cpu``, ``cuda``).
        shard_examples: examples per store shard (default: ~128 MiB shards).
        memory_budget: bytes for output gradients and per-tensor per-example gradients at once
            (rows are processed in groups that fit).

    Returns:
        The finalized store (or the plan for ``dry_run``).

    Notes:
        Memory: the model, one batch's activations times the number of rows, and one parameter
        tensor's per-example gradients ``[batch * rows, n_tensor]`` at a time, plus ``[batch *
        rows, d]`` projected rows. Never ``rows * n`` for the whole model (paper, sec. 2.2.1).
    """
    model.eval()
    parameter_dtype = next(model.parameters()).dtype
    included, layout = select_parameters(model, include, exclude)
    wanted = {id(item.param) for item in included}
    for param in model.parameters():
        param.requires_grad_(id(param) in wanted)
    if tokenizer is None:
        if task is not None and task.formulation != "classifier":
            raise TaskError("models without a tokenizer take the classifier formulation only")
        if num_classes is None:
            raise InvalidArgumentError("give num_classes for a model without a tokenizer")
        formulation = TensorClassifier(model, num_classes, device)
    else:
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
    classes = formulation.num_classes
    if pef.kind == "exact" and classes > MAX_STORED_PROBS:
        raise InvalidArgumentError(f"exact PEFs would have {classes:,} rows (one per class); use --eps R' "
                                   f"or --gradient")
    rank = pef.stored_rank(classes)
    rows = pef.rows(classes)
    if projection == "none":
        dim, projection_spec = layout.n_total, {"kind": "none"}
    elif projection == "ssp-v1":
        projection_spec = ProjectionSpec(seed=seed, d=dim).to_dict()
    else:
        raise InvalidArgumentError(f"--projection must be ssp-v1 or none, got {projection!r}")
    start, stop = example_range(len(examples), max_examples, shard)
    plan = BuildPlan(layout.n_total, stop - start, rank, dim, classes, (start, stop), len(layout.names))
    if dry_run:
        return plan

    pef_spec = {
        **(task.to_dict() if task is not None else {"formulation": "classifier"}),
        "pef": pef.to_dict(), "num_classes": classes, "normalization": "unit-frobenius",
    }
    names = _label_names(model, task, classes)
    if names is not None:
        pef_spec["label_names"] = names
    writer = create_store(
        out, rank=rank, dim=dim, projection=projection_spec, kind="gradient" if pef.kind == "gradient" else "lrm-pef",
        parameter_layout=layout, model=model_identity(model, model_name), pef_spec=pef_spec,
        resume=resume, overwrite=overwrite, command=command, shard_examples=shard_examples,
        extra_provenance={"example_range": [start, stop], "shard": list(shard) if shard else None},
    )
    eps = eps_matrix(pef, classes, dtype=parameter_dtype, device=device)
    first = start + writer.num_examples
    from tqdm.auto import tqdm

    bar = tqdm(total=stop - start, initial=first - start, unit="ex", desc="build", disable=not progress,
               dynamic_ncols=True)
    for batch_start in range(first, stop, batch_size):
        indices = list(range(batch_start, min(batch_start + batch_size, stop)))
        batch = [examples[i] for i in indices]
        texts = [task.render(e) for e in batch] if task is not None else None
        g, log_probs = _batch_pefs(batch, texts, formulation, included, layout, pef, eps, rows,
                                   projection_spec, dim, backend, parameter_dtype, memory_budget)
        g, norms = finish_pefs(g, pef)
        writer.append(g.detach().to("cpu", torch.float32), _records(batch, texts, indices, task, log_probs, norms))
        bar.update(len(indices))
    bar.close()
    return writer.finalize()


def _label_names(model: nn.Module, task: TaskSpec | None, classes: int) -> list[str] | None:
    """Names of the classes: the task's label strings, else a classifier's ``id2label`` when set."""
    if task is not None and task.labels:
        return [label.strip() for label in task.labels]
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
    names = [str(id2label.get(i, id2label.get(str(i), ""))) for i in range(classes)]
    if all(names) and names != [f"LABEL_{i}" for i in range(classes)]:
        return names
    return None


def _batch_pefs(batch, texts, formulation, included, layout, pef, eps, rows, projection_spec, dim,
                backend, dtype, memory_budget):
    """Projected PEF rows ``[B, rows, dim]`` of one batch, and its class log-probabilities."""
    count = len(batch)
    with ActivationRecorder(included) as recorder:
        if texts is None:
            inputs = torch.stack([torch.as_tensor(np.asarray(e["input"])) for e in batch]).to(dtype)
            log_probs, owner = formulation.log_probs(inputs)
        else:
            log_probs, owner = formulation.log_probs(texts)
    objectives = objective_rows(log_probs, pef, eps)
    device = log_probs.device
    unprojected = projection_spec["kind"] == "none"
    exact_dtype = torch.float64 if unprojected and dtype == torch.float64 else torch.float32
    out = torch.zeros(count * rows, dim, dtype=exact_dtype, device=device)

    out = out.view(count, rows, dim)

    def project_block(block: torch.Tensor, offset: int, row_slice: slice) -> None:
        block = block.detach().view(count, -1, block.shape[1])
        if unprojected:
            out[:, row_slice, offset:offset + block.shape[2]] = block
        else:
            projected = project(block.reshape(-1, block.shape[2]), d=dim, seed=projection_spec["seed"],
                                offset=offset, n_total=layout.n_total, backend=backend)
            out[:, row_slice] += projected.view(count, -1, dim)

    projected_row_gradients(objectives, recorder, included, sequence_owner=owner, num_examples=count,
                            project_block=project_block, memory_budget=memory_budget)
    return out, log_probs.detach()


def _records(batch, texts, indices, task, log_probs, norms) -> list[dict]:
    probs = log_probs.exp().to("cpu", torch.float64)
    keep_probs = probs.shape[1] <= MAX_STORED_PROBS
    records = []
    for i, (example, index) in enumerate(zip(batch, indices)):
        records.append({
            "source_id": str(example.get("id", index)) if isinstance(example, dict) else str(index),
            "text": texts[i] if texts is not None else None,
            "label": (task.gold_label(example) if task is not None
                      else (int(example["label"]) if example.get("label") is not None else None)),
            "prediction": int(probs[i].argmax()),
            "probs": probs[i].tolist() if keep_probs else None,
            "pef_norm": float(norms[i]),
        })
    return records


# ----------------------------------------------------------------------------------------------
# Loading from the hub or local folders/files


def load_model_and_tokenizer(name_or_path: str, formulation: str, *, device: str = "cpu",
                             dtype: str = "float32"):
    """``from_pretrained`` a causal LM (or a sequence classifier for ``classifier``)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    torch_dtype = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}[dtype]
    loader = AutoModelForSequenceClassification if formulation == "classifier" else AutoModelForCausalLM
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        model = loader.from_pretrained(name_or_path)
    except (OSError, EnvironmentError) as error:
        raise InvalidArgumentError(f"cannot load model {name_or_path!r}: {str(error).splitlines()[0]}") from None
    except ValueError as error:
        kind = "sequence classifier" if formulation == "classifier" else "causal language model"
        raise InvalidArgumentError(f"{name_or_path!r} cannot be loaded as a {kind} (needed by the "
                                   f"{formulation} formulation): {str(error).splitlines()[0]}") from None
    return model.to(device=device, dtype=torch_dtype), tokenizer


def load_examples(data: str, *, config: str | None = None, split: str = "train"):
    """A local jsonl/json/csv/parquet file, or a hub dataset ``name`` (with ``config``/``split``)."""
    import datasets

    path = Path(data)
    builders = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
    try:
        if path.exists():
            if path.suffix not in builders:
                raise InvalidArgumentError(f"data file {path} must be .jsonl, .json, .csv or .parquet")
            return datasets.load_dataset(builders[path.suffix], data_files=str(path), split="train")
        if path.suffix in builders or ("/" in data and path.parent.exists()):
            raise InvalidArgumentError(f"data file {path} does not exist")
        return datasets.load_dataset(data, config, split=split)
    except InvalidArgumentError:
        raise
    except Exception as error:  # datasets raises many types for missing/unreachable data
        raise InvalidArgumentError(f"cannot load data {data!r}: {str(error).splitlines()[0]}") from None


__all__ = ["BuildPlan", "build_store", "example_range", "load_examples", "load_model_and_tokenizer",
           "parse_shard"]
