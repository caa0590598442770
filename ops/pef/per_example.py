"""Per-example gradients of many scalar rows, projected parameter tensor by parameter tensor.

One batched forward pass records, for every module that owns an included parameter, its input
and output. For each row objective (one per class, EPS row, or the predicted class) one backward
pass gives the gradient of ``sum_b row[b]`` with respect to those outputs; since examples do not
interact, the slice of example ``b`` is exactly that example's gradient. Per-example parameter
gradients then follow in closed form per layer type (the rules registered in
:mod:`npeff.ops.pef.layers`, e.g. ``sum_t gy[b, t]^T x[b, t]`` for a linear layer) and each
tensor's ``[B * R, n_tensor]`` block is projected at once, so memory scales with the largest
tensor, never with ``B * R * n``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Callable, NamedTuple

import torch
from torch import nn

from npeff.errors import InvalidArgumentError
from npeff.ops.pef.block_buffer import BlockBuffer
from npeff.ops.pef.layers import LayerRule, is_default_excluded, layer_rule, supported_layers
from npeff.store.manifest import ParameterLayout


class ParameterOwner(NamedTuple):
    """A layer that holds a parameter (tied weights have several), with its rule (None when the
    layer type has none) and the parameter's attribute name in it (``"weight"``)."""

    module: nn.Module
    rule: LayerRule | None
    attribute: str


@dataclasses.dataclass
class IncludedParameter:
    """A selected parameter, its offset in the flat parameter vector and the layers owning it."""

    name: str
    param: nn.Parameter
    offset: int
    owners: list[ParameterOwner]


def select_parameters(model: nn.Module, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()
                      ) -> tuple[list[IncludedParameter], ParameterLayout]:
    """Choose the parameters whose per-example gradients form the PEF rows.

    Default: every parameter except those of embeddings and normalisation layers. ``include``
    globs (over parameter names) replace the default selection; ``exclude`` globs remove.
    """
    owners: dict[int, list] = {}
    for module in model.modules():
        for attribute, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append(ParameterOwner(module, layer_rule(module), attribute))
    chosen = []
    for name, param in model.named_parameters():
        param_owners = owners[id(param)]
        if include:
            keep = any(fnmatch.fnmatchcase(name, pattern) for pattern in include)
        else:
            keep = not any(is_default_excluded(owner.module) for owner in param_owners)
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
            keep = False
        if keep:
            chosen.append((name, param, param_owners))
    if not chosen:
        raise InvalidArgumentError(
            "no parameter is selected: check the --include/--exclude patterns "
            f"(parameters are named like {next(iter(n for n, _ in model.named_parameters()), '?')!r})"
        )
    for name, _, param_owners in chosen:
        for owner in param_owners:
            if owner.rule is None:
                raise InvalidArgumentError(
                    f"parameter {name!r} belongs to a {type(owner.module).__name__} layer, for which npeff "
                    f"has no per-example gradient rule (supported: {', '.join(supported_layers())}); "
                    f"leave it out with --exclude '{name}'"
                )
    layout = ParameterLayout.from_shapes([(name, tuple(param.shape)) for name, param, _ in chosen])
    included = [IncludedParameter(name, param, offset, param_owners)
                for (name, param, param_owners), offset in zip(chosen, layout.offsets)]
    return included, layout


@dataclasses.dataclass
class RecordedCall:
    """One forward call of a layer owning included parameters: its first input and its output."""

    module: nn.Module
    rule: LayerRule
    inputs: torch.Tensor
    output: torch.Tensor

    def per_sequence_gradient(self, attribute: str, gy: torch.Tensor, leading: slice,
                              out: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sequence gradient of the first-dimension slice ``leading`` of one parameter of this
        call, for ``k`` rows at once.

        ``gy`` is ``[k, N, ..., out]``; returns ``[N, k, len(leading), *param.shape[1:]]``
        (sequence-major, so that it flattens to ``[N * k, n_block]`` without a copy), written into
        ``out`` (a tensor of that shape) where the layer's rule can.
        """
        rows, n = gy.shape[0], gy.shape[1]
        return self.rule.gradient(self.module, attribute, self.inputs, gy.reshape(rows, n, -1, gy.shape[-1]),
                                  leading, out=out)


class ActivationRecorder:
    """Context manager recording the inputs and outputs of the modules owning included parameters."""

    def __init__(self, included: list[IncludedParameter]):
        self.modules = {}
        for item in included:
            for owner in item.owners:
                self.modules[id(owner.module)] = (owner.module, owner.rule)
        self.calls: list[RecordedCall] = []
        self._handles = []

    def __enter__(self) -> "ActivationRecorder":
        for module, rule in self.modules.values():
            self._handles.append(module.register_forward_hook(self._hook(rule)))
        return self

    def _hook(self, rule: LayerRule):
        def record(module, inputs, output):
            self.calls.append(RecordedCall(module, rule, inputs[0].detach(), output))
        return record

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


#: default bound on the bytes of output gradients and of one tensor's per-example gradients
MEMORY_BUDGET = 64 << 20


def projected_row_gradients(
    rows: torch.Tensor,
    recorder: ActivationRecorder,
    included: list[IncludedParameter],
    *,
    sequence_owner: torch.Tensor | None,
    num_examples: int,
    project_block: Callable[[torch.Tensor, int, slice], None],
    memory_budget: int = MEMORY_BUDGET,
) -> None:
    """Compute the per-example gradients of ``rows[b, r]`` and hand them over tensor by tensor.

    Args:
        rows: ``[B, R]`` objectives, part of the autograd graph of the ``N`` recorded sequences.
        recorder: the activations of the forward pass that produced ``rows``.
        included: the selected parameters (with their offsets in the flat vector).
        sequence_owner: ``[N]`` example index of each sequence, or None when ``N`` examples.
        num_examples: ``B``.
        project_block: called as ``project_block(block, offset, row_slice)`` with ``block`` of shape
            ``[B * k, n_tensor]`` (example-major) holding rows ``row_slice`` (``k`` of them) of every
            example, for every included parameter.
        memory_budget: bytes allowed for the output gradients of one pass over a group of rows,
            and for one tensor's per-example gradients; rows are processed in groups that fit.

    Notes:
        Memory: the recorded activations, plus about ``memory_budget`` twice. A tensor too large for
        the budget is cut along its first dimension (contiguous blocks of the flat vector), never
        along the rows: all ``B * k`` rows of a group share each projection call, so the hash of
        each parameter entry is computed once per group (once per batch when the output gradients
        of all rows fit the budget).
    """
    calls = recorder.calls
    outputs = [call.output for call in calls]
    n_rows = rows.shape[1]
    sequences = rows.shape[0] if sequence_owner is None else sequence_owner.shape[0]
    for call, item in ((c, i) for i in included for o in i.owners for c in calls if c.module is o.module):
        if call.output.shape[0] != sequences:
            raise InvalidArgumentError(
                f"parameter {item.name!r} feeds all examples of a batch at once (its layer's output "
                f"has batch size {call.output.shape[0]}, not {sequences}), so it has no per-example "
                f"gradient here; leave it out with --exclude '{item.name}'"
            )
    by_module: dict[int, list[int]] = {}
    for i, call in enumerate(calls):
        by_module.setdefault(id(call.module), []).append(i)
    buffer = BlockBuffer()  # every block of a slicing rule is written into it: one allocation per batch
    row_bytes = max(1, sum(o.numel() for o in outputs) * rows.element_size())
    group = max(1, min(n_rows, memory_budget // row_bytes))
    for first in range(0, n_rows, group):
        last = min(first + group, n_rows)
        gys = _output_gradients(rows, outputs, first, last)  # each [k, N, ..., out]
        for item in included:
            leading_size, per_leading = _leading_split(item.param)
            if item.param.dim() > 0 and all(owner.rule.slices_leading for owner in item.owners):
                bytes_per_leading = max(1, sequences * (last - first) * per_leading * rows.element_size())
                step = max(1, memory_budget // bytes_per_leading)
                for lo in range(0, leading_size, step):
                    leading = slice(lo, min(lo + step, leading_size))
                    block = _example_gradients(item, calls, by_module, gys, leading, sequence_owner, num_examples,
                                               rows, buffer)
                    project_block(block, item.offset + lo * per_leading, slice(first, last))
                continue
            # a rule that computes whole tensors only (embeddings, norms, custom rules): cut the rows
            whole = slice(0, leading_size)
            per_rows = max(1, memory_budget // max(1, sequences * item.param.numel() * rows.element_size()))
            for lo in range(0, last - first, per_rows):
                hi = min(lo + per_rows, last - first)
                block = _example_gradients(item, calls, by_module, [g[lo:hi] for g in gys], whole, sequence_owner,
                                           num_examples, rows)
                project_block(block, item.offset, slice(first + lo, first + hi))


def _leading_split(param: torch.Tensor) -> tuple[int, int]:
    """``(size of the first dimension, entries per first index)`` (a scalar: one of one)."""
    if param.dim() == 0:
        return 1, 1
    return param.shape[0], param.numel() // max(1, param.shape[0])


def _output_gradients(rows, outputs, first, last) -> list[torch.Tensor]:
    """Gradients of ``sum_b rows[b, r]`` for ``r`` in ``[first, last)`` with respect to every
    recorded output, stacked as ``[k, N, ..., out]`` (a view, without a copy, when ``k = 1``)."""
    n_rows = rows.shape[1]

    def row_gradients(r):
        grads = torch.autograd.grad(rows[:, r].sum(), outputs, retain_graph=r < n_rows - 1, allow_unused=True)
        return [g if g is not None else torch.zeros_like(o) for g, o in zip(grads, outputs)]

    if last - first == 1:
        return [g.unsqueeze(0) for g in row_gradients(first)]
    gys = [torch.empty((last - first,) + tuple(o.shape), dtype=o.dtype, device=o.device) for o in outputs]
    for r in range(first, last):
        for target, grad in zip(gys, row_gradients(r)):
            target[r - first].copy_(grad)
    return gys


def _example_gradients(item, calls, by_module, gys, leading, sequence_owner, num_examples, rows,
                       buffer: BlockBuffer | None = None) -> torch.Tensor:
    """``[B * k, n_block]`` per-example gradients of the first-dimension slice ``leading`` of one
    parameter (``n_block`` entries, contiguous in the flat vector) for ``k`` rows (example-major).

    With a ``buffer``, the first layer call's part is written into it (when its rule can): the
    result is then a view of the buffer, valid until the next block."""
    k = gys[0].shape[0] if gys else 0
    scalar = item.param.dim() == 0
    total = None
    for owner in item.owners:
        for i in by_module.get(id(owner.module), []):
            out = None
            if total is None and buffer is not None and owner.rule.writes_into and owner.rule.slices_leading and not scalar:
                shape = (gys[i].shape[1], k, leading.stop - leading.start, *item.param.shape[1:])
                out = buffer.view(shape, gys[i].dtype, gys[i].device)
            part = calls[i].per_sequence_gradient(owner.attribute, gys[i], slice(None) if scalar else leading, out)
            total = part if total is None else total + part
    if total is None:  # parameter unused by this forward pass: zero gradients
        _, per_leading = _leading_split(item.param)
        width = per_leading * (leading.stop - leading.start)
        return torch.zeros(num_examples * k, width, dtype=rows.dtype, device=rows.device)
    total = total.reshape(total.shape[0], k, -1)
    if sequence_owner is not None:
        folded = torch.zeros(num_examples, k, total.shape[2], dtype=total.dtype, device=total.device)
        total = folded.index_add_(0, sequence_owner, total)
    return total.reshape(num_examples * k, -1)
