"""Activation stores for the SAE baseline (paper, section 3.1 and appendix G): each example's
residual-stream output of one transformer block at the example's final token, unit-normalised.

The store is of kind ``activation``: rank 1, ``d`` = the model's hidden size, projection ``none``
and no parameter layout (activations are not in parameter space, so they cannot be perturbed along).
Its example table is the PEF stores' (text, label, prediction, probabilities), with ``pef_norm``
holding the activation's L2 norm before normalisation, so every analysis command reads it.

The block's output is read by a forward hook on the block itself (``model.transformer.h[L]`` for
GPT-2, ``model.model.layers[L]`` for Llama, ...): the residual stream after block ``L``, before any
final norm the model applies (Hugging Face's last ``hidden_states`` entry has it applied).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from npeff.errors import InvalidArgumentError
from npeff.ops.pef.batch import example_records
from npeff.ops.pef.build import _formulation, _label_names, example_range
from npeff.ops.pef.loading import model_identity
from npeff.ops.pef.tasks import TaskSpec
from npeff.store import PefStore, create_store

STORE_KIND = "activation"
#: formulations whose forward pass is one sequence per example (the suffixes one runs several)
SUPPORTED_FORMULATIONS = ("label-tokens", "next-token", "classifier")


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of transformer blocks: the ``ModuleList`` with ``config.num_hidden_layers``
    entries (the longest one when the config does not say)."""
    layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    candidates = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if layers is not None:
        candidates = [m for m in candidates if len(m) == layers]
    if not candidates:
        raise InvalidArgumentError(f"found no list of transformer blocks in {type(model).__name__}; "
                                   f"activations are read from a model with a ModuleList of its layers")
    return max(candidates, key=len)


def resolve_layer(model: nn.Module, layer: int | None) -> int:
    """The block index: ``layer`` (negative counts from the end), the last block by default."""
    count = len(transformer_blocks(model))
    if layer is None:
        return count - 1
    if isinstance(layer, bool) or not isinstance(layer, int) or not -count <= layer < count:
        raise InvalidArgumentError(f"--layer must be a block index in [{-count}, {count - 1}] for this model "
                                   f"({count} blocks), got {layer!r}")
    return layer % count


class BlockOutput:
    """A forward hook keeping the hidden states ``[B, T, hidden]`` a block outputs."""

    def __init__(self, block: nn.Module):
        self.block, self.value, self._handle = block, None, None

    def __enter__(self) -> BlockOutput:
        def keep(module, inputs, output):
            self.value = (output[0] if isinstance(output, tuple) else output).detach()

        self._handle = self.block.register_forward_hook(keep)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


def final_token_activations(formulation, block: nn.Module, texts: Sequence[str]):
    """``([B, hidden] activations at each text's last token, [B, C] class log-probabilities)``,
    from one forward pass (inputs are right-padded, so the last token is at ``len - 1``)."""
    lengths = torch.tensor([len(seq) for seq in formulation._encode(list(texts))])
    with torch.no_grad(), BlockOutput(block) as hook:
        log_probs, _ = formulation.log_probs(list(texts))
    states = hook.value
    return states[torch.arange(len(texts), device=states.device), (lengths - 1).to(states.device)], log_probs


def build_activation_store(model: nn.Module, examples: Sequence[dict], task: TaskSpec, out: str | Path, *,
                           tokenizer, layer: int | None = None, batch_size: int = 16, device: str = "cpu",
                           max_examples: int | None = None, overwrite: bool = False, resume: bool = False,
                           model_name: str | None = None, gguf_file: str | None = None, command: str | None = None,
                           progress: bool = False, shard_examples: int | None = None) -> PefStore:
    """Write each example's unit-normalised residual stream at its final token to a store at ``out``.

    Args:
        model, tokenizer: a Hugging Face causal LM or sequence classifier.
        examples, task: the data and its formulation (label-tokens, next-token or classifier).
        layer: the block whose output is read (default: the last; negative counts from the end).
        model_name, gguf_file: the model's identity in the manifest (its name or folder, and the GGUF
            file in that folder it was loaded from, if any).

    Notes:
        Memory: the model and one batch's forward pass; the store holds ``[m, 1, hidden]``.
    """
    if tokenizer is None or task is None:
        raise InvalidArgumentError("activation stores are built from a language model with its tokenizer and a task")
    if task.formulation not in SUPPORTED_FORMULATIONS:
        raise InvalidArgumentError(f"activations are read for the formulations {SUPPORTED_FORMULATIONS}, "
                                   f"not {task.formulation!r} (its forward pass runs several sequences per example)")
    model.eval()
    index = resolve_layer(model, layer)
    block = transformer_blocks(model)[index]
    formulation = _formulation(model, examples, task, tokenizer, None, device)
    start, stop = example_range(len(examples), max_examples, None)
    probe, _ = final_token_activations(formulation, block, [task.render(examples[start])])  # the block's width
    hidden = probe.shape[1]
    spec = {**task.to_dict(), "num_classes": formulation.num_classes, "normalization": "unit-l2",
            "activation": {"layer": index, "blocks": len(transformer_blocks(model)), "position": "final token",
                           "module": f"{type(block).__name__}"}}
    names = _label_names(model, task, formulation.num_classes)
    if names is not None:
        spec["label_names"] = names
    writer = create_store(out, rank=1, dim=hidden, projection={"kind": "none"}, kind=STORE_KIND,
                          model=model_identity(model, model_name, gguf_file=gguf_file), pef_spec=spec,
                          overwrite=overwrite, resume=resume, command=command, shard_examples=shard_examples)
    from npeff.progress import progress_bar

    first = start + writer.num_examples
    with progress_bar(total=stop - start, initial=first - start, unit="ex", desc="activations",
                      enabled=progress) as bar:
        for batch_start in range(first, stop, batch_size):
            indices = list(range(batch_start, min(batch_start + batch_size, stop)))
            batch = [examples[i] for i in indices]
            texts = [task.render(e) for e in batch]
            acts, log_probs = final_token_activations(formulation, block, texts)
            acts = acts.to("cpu", torch.float64)
            norms = acts.norm(dim=1)
            unit = acts / torch.where(norms > 0, norms, torch.ones_like(norms))[:, None]
            records = example_records(batch, texts, indices, task, log_probs, norms)
            writer.append(unit[:, None, :].to(torch.float32).numpy(), records)
            bar.update(len(indices))
    return writer.finalize()


def check_activation_store(store: PefStore) -> None:
    """Refuse a store that is not an activation store."""
    if store.config.kind != STORE_KIND:
        raise InvalidArgumentError(f"{store.path} is a store of kind {store.config.kind!r}; the SAE trains on an "
                                   f"activation store (kind 'activation', built with npeff build --activations)")
