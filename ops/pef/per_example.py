"""Per-example gradients of many scalar rows, projected parameter tensor by parameter tensor.

One batched forward pass records, for every module that owns an included parameter, its input
and the shape of its output, and puts a tap on the output (an identity whose backward hands the
output's gradient over). For each row objective (one per class, EPS row, or the predicted class)
one backward pass gives the gradient of ``sum_b row[b]`` with respect to those outputs; since
examples do not interact, the slice of example ``b`` is exactly that example's gradient.
Per-example parameter gradients then follow in closed form per layer type (the rules registered in
:mod:`npeff.ops.pef.layers`, e.g. ``sum_t gy[b, t]^T x[b, t]`` for a linear layer) and each
tensor's ``[B * R, n_tensor]`` block is projected at once, as soon as the backward pass of the
group's last row has reached every layer owning the tensor: memory scales with the largest tensor
and one layer's output gradients, never with ``B * R * n`` nor with the whole model's output
gradients.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
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
    """One forward call of a layer owning included parameters: its first input and its output's
    shape (the output itself is tapped, not kept: its gradient arrives during the backward pass).
    ``inputs`` is released (None) once every parameter that reads it has been projected."""

    module: nn.Module
    rule: LayerRule
    inputs: torch.Tensor | None
    output_shape: torch.Size
    output_dtype: torch.dtype
    output_device: torch.device

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


class _Tap(torch.autograd.Function):
    """The identity on a recorded layer output, whose backward hands the output's whole gradient
    ``[N, ..., out]`` to ``recorder.receive(index, grad)`` and passes it on unchanged.

    Its second input, ``anchor`` (a scalar leaf shared by all taps), is what a backward pass asks
    the gradient of: every tap then lies on a path to it and runs, while the model's parameters
    (leaves that nothing asks for) get no weight gradients and nothing is accumulated."""

    @staticmethod
    def forward(ctx, output, anchor, recorder, index):
        ctx.recorder, ctx.index = recorder, index
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad):
        ctx.recorder.receive(ctx.index, grad)
        return grad, None, None, None


class ActivationRecorder:
    """Context manager recording the inputs of the modules owning included parameters and tapping
    their outputs (see :class:`_Tap`); ``receive`` is set by whoever runs the backward passes."""

    def __init__(self, included: list[IncludedParameter]):
        self.modules = {}
        for item in included:
            for owner in item.owners:
                self.modules[id(owner.module)] = (owner.module, owner.rule)
        self.calls: list[RecordedCall] = []
        self.anchor: torch.Tensor | None = None
        self.receive: Callable[[int, torch.Tensor], None] | None = None
        self._handles = []

    def __enter__(self) -> "ActivationRecorder":
        for module, rule in self.modules.values():
            self._handles.append(module.register_forward_hook(self._hook(rule)))
        return self

    def _hook(self, rule: LayerRule):
        def record(module, inputs, output):
            if not isinstance(output, torch.Tensor) or not output.is_floating_point():
                raise InvalidArgumentError(
                    f"a {type(module).__name__} layer returned {type(output).__name__}, not a floating-point "
                    f"tensor: npeff takes per-example gradients of layers with one tensor output")
            if self.anchor is None:
                self.anchor = torch.zeros((), dtype=output.dtype, device=output.device, requires_grad=True)
            self.calls.append(RecordedCall(module, rule, inputs[0].detach(), output.shape, output.dtype,
                                           output.device))
            return _Tap.apply(output, self.anchor, self, len(self.calls) - 1)
        return record

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


#: default bound on the bytes of held output gradients and of one tensor's per-example gradients
MEMORY_BUDGET = 64 << 20


def row_group_size(n_rows: int, row_bytes: int, memory_budget: int) -> int:
    """Rows per group: the output gradients of all but a group's last row are held (at most
    ``max(memory_budget, row_bytes)`` bytes), the last row's are used as they arrive. So at least
    two rows share each projection call whenever there are two."""
    return min(n_rows, 1 + max(1, memory_budget // max(1, row_bytes)))


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
            example, for every included parameter (in the order the backward pass reaches them).
        memory_budget: bytes allowed for the held output gradients of a group of rows (see
            :func:`row_group_size`) and for one tensor's per-example gradients.

    Notes:
        Memory: the recorded activations, the held output gradients of all but one row of a group
        (at most ``max(memory_budget, one row's)``), one layer's output gradients of the last row,
        and ``memory_budget`` for a block. In the last group each layer's inputs are released as
        soon as its parameters are projected, and a backward pass without ``retain_graph`` frees
        the graph as it goes, so a one-row build never holds the whole model's output gradients.
        A tensor too large for the budget is cut along its first dimension (contiguous blocks of
        the flat vector), never along the rows: all ``B * k`` rows of a group share each
        projection call, so the hash of each parameter entry is computed once per group.
    """
    calls = recorder.calls
    n_rows = rows.shape[1]
    sequences = rows.shape[0] if sequence_owner is None else sequence_owner.shape[0]
    for call, item in ((c, i) for i in included for o in i.owners for c in calls if c.module is o.module):
        if call.output_shape[0] != sequences:
            raise InvalidArgumentError(
                f"parameter {item.name!r} feeds all examples of a batch at once (its layer's output "
                f"has batch size {call.output_shape[0]}, not {sequences}), so it has no per-example "
                f"gradient here; leave it out with --exclude '{item.name}'"
            )
    by_module: dict[int, list[int]] = {}
    for i, call in enumerate(calls):
        by_module.setdefault(id(call.module), []).append(i)
    readers: dict[int, list[int]] = {i: [] for i in range(len(calls))}  # call -> items reading its gradient
    for index, item in enumerate(included):
        for owner in item.owners:
            for i in by_module.get(id(owner.module), []):
                readers[i].append(index)
    unfed = [index for index, item in enumerate(included)  # no layer call of this forward pass feeds them
             if not any(by_module.get(id(o.module)) for o in item.owners)]
    buffer = BlockBuffer()  # every block of a slicing rule is written into it: one allocation per batch
    row_bytes = sum(math.prod(c.output_shape) for c in calls) * rows.element_size()
    group = row_group_size(n_rows, row_bytes, memory_budget)
    for first in range(0, n_rows, group):
        last = min(first + group, n_rows)
        final = last == n_rows
        pass_ = _RowGroupPass(recorder, last - first)
        for r in range(first, last - 1):  # held rows: every output gradient kept until the last row's pass
            pass_.run(rows, r, retain_graph=True)
        waiting = {index: sum(len(by_module.get(id(o.module), [])) for o in item.owners)
                   for index, item in enumerate(included)}
        users = {i: len(readers[i]) for i in range(len(calls))}

        def project_parameter(index: int) -> None:
            item = included[index]
            _project_parameter(item, calls, by_module, pass_.gys, first, last, sequences, sequence_owner,
                               num_examples, rows, buffer, project_block, memory_budget)
            for owner in item.owners:
                for i in by_module.get(id(owner.module), []):
                    users[i] -= 1
                    if users[i] == 0:  # no parameter left that reads this call
                        pass_.gys[i] = None
                        if final:
                            calls[i].inputs = None

        def arrived(i: int) -> None:
            for index in readers[i]:
                waiting[index] -= 1
                if waiting[index] == 0:
                    project_parameter(index)

        pass_.run(rows, last - 1, retain_graph=not final, then=arrived)
        for index in unfed:
            project_parameter(index)
    recorder.receive = None


class _RowGroupPass:
    """The output gradients of one group of ``k`` rows, as the rows' backward passes produce them.

    ``gys[i]`` is call ``i``'s ``[k, N, ..., out]`` once the group's last row has reached it (slot
    ``r - first`` for row ``r``; a view without a copy when ``k = 1``), ``[k - 1, N, ..., out]``
    before. A call that a row's objective does not reach gets zeros."""

    def __init__(self, recorder: ActivationRecorder, k: int):
        self.recorder, self.calls, self.k, self.slot = recorder, recorder.calls, k, 0
        self.gys: list[torch.Tensor | None] = [None] * len(self.calls)

    def run(self, rows: torch.Tensor, r: int, *, retain_graph: bool,
            then: Callable[[int], None] | None = None) -> None:
        """The backward pass of ``sum_b rows[b, r]``, storing each output gradient as it arrives
        and calling ``then(i)`` once call ``i``'s is stored (during the pass, or after it with
        zeros for the calls it did not reach)."""
        reached: set[int] = set()

        def receive(i: int, grad: torch.Tensor) -> None:
            self._store(i, grad)
            reached.add(i)
            if then is not None:
                then(i)

        recorder = self.recorder
        recorder.receive = receive
        if recorder.anchor is not None:
            torch.autograd.grad(rows[:, r].sum(), recorder.anchor, retain_graph=retain_graph, allow_unused=True)
        for i, call in enumerate(self.calls):
            if i not in reached:
                receive(i, torch.zeros(call.output_shape, dtype=call.output_dtype, device=call.output_device))
        self.slot += 1

    def _store(self, i: int, grad: torch.Tensor) -> None:
        """Held rows are copied into a ``[k - 1, ...]`` buffer per call; the last row's gradient is
        joined to them on arrival (one layer's ``k`` rows at a time), the buffer then released."""
        if self.k == 1:
            self.gys[i] = grad.unsqueeze(0)
        elif self.slot == self.k - 1:
            self.gys[i] = torch.cat((self.gys[i], grad.unsqueeze(0)))
        else:
            if self.gys[i] is None:
                self.gys[i] = torch.empty((self.k - 1, *grad.shape), dtype=grad.dtype, device=grad.device)
            self.gys[i][self.slot].copy_(grad)


def _project_parameter(item, calls, by_module, gys, first, last, sequences, sequence_owner, num_examples, rows,
                       buffer, project_block, memory_budget) -> None:
    """Project the per-example gradients of rows ``[first, last)`` of one parameter, in blocks of
    at most ``memory_budget`` bytes: cut along its first dimension when every owner's rule can
    (all rows in each block), else whole tensors cut along the rows."""
    leading_size, per_leading = _leading_split(item.param)
    if item.param.dim() > 0 and all(owner.rule.slices_leading for owner in item.owners):
        bytes_per_leading = max(1, sequences * (last - first) * per_leading * rows.element_size())
        step = max(1, memory_budget // bytes_per_leading)
        for lo in range(0, leading_size, step):
            leading = slice(lo, min(lo + step, leading_size))
            block = _example_gradients(item, calls, by_module, gys, last - first, leading, sequence_owner,
                                       num_examples, rows, buffer)
            project_block(block, item.offset + lo * per_leading, slice(first, last))
        return
    # a rule that computes whole tensors only (embeddings, norms, custom rules): cut the rows
    whole = slice(0, leading_size)
    per_rows = max(1, memory_budget // max(1, sequences * item.param.numel() * rows.element_size()))
    for lo in range(0, last - first, per_rows):
        hi = min(lo + per_rows, last - first)
        row_gys = [None if g is None else g[lo:hi] for g in gys]
        block = _example_gradients(item, calls, by_module, row_gys, hi - lo, whole, sequence_owner, num_examples,
                                   rows)
        project_block(block, item.offset, slice(first + lo, first + hi))


def _leading_split(param: torch.Tensor) -> tuple[int, int]:
    """``(size of the first dimension, entries per first index)`` (a scalar: one of one)."""
    if param.dim() == 0:
        return 1, 1
    return param.shape[0], param.numel() // max(1, param.shape[0])


def _example_gradients(item, calls, by_module, gys, k, leading, sequence_owner, num_examples, rows,
                       buffer: BlockBuffer | None = None) -> torch.Tensor:
    """``[B * k, n_block]`` per-example gradients of the first-dimension slice ``leading`` of one
    parameter (``n_block`` entries, contiguous in the flat vector) for ``k`` rows (example-major),
    from ``gys[i]`` ``[k, N, ..., out]`` of each call ``i`` of its owners.

    With a ``buffer``, the first layer call's part is written into it (when its rule can): the
    result is then a view of the buffer, valid until the next block."""
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
