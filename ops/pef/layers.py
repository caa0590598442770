"""Per-layer per-example gradient rules, registered by layer type.

A rule turns what one forward call of a layer recorded (its input ``x`` and the gradients ``gy``
of ``k`` row objectives with respect to its output) into the per-sequence gradients of one of its
parameters, in closed form: e.g. ``sum_t gy[r, n, t]^T x[n, t]`` for a linear weight. Since the
sequences of a batch do not interact, this is exactly each sequence's own gradient (paper,
section 2.2.1).

A rule may compute a slice ``leading`` of the parameter's first dimension only (the built-in
affine rules do): a block of contiguous entries of the flat parameter vector, so that a large
tensor is cut to fit the memory budget while every row of the batch shares each projection call.

Supporting a new layer type is one entry::

    register_layer_rule(MyLayer, LayerRule(name="MyLayer", per_sequence_gradient=my_gradient))

The built-in rules cover ``nn.Linear``, GPT-2's ``Conv1D``, ``nn.Embedding`` (tied weights
included: a parameter owned by several layers sums their rules) and ``nn.LayerNorm``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

#: ``(module, attribute, x, gy[, leading]) -> [N, k, *param.shape]`` with ``x`` the layer's recorded
#: first input ``[N, ..., in]`` and ``gy`` the output gradients of ``k`` rows, ``[k, N, T, out]``
#: (all positions of a sequence flattened into ``T``); a rule with ``slices_leading`` also takes
#: ``leading``, a slice of the parameter's first dimension, and returns only that part of it; a
#: rule with ``writes_into`` also takes ``out=``, a preallocated tensor of the result's shape and
#: dtype (or None) that it may fill and return.
PerSequenceGradient = Callable[..., torch.Tensor]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LayerRule:
    """How to compute the per-sequence gradients of the parameters of one layer type.

    Attributes:
        name: the layer type as messages name it (``"Linear"``).
        per_sequence_gradient: see :data:`PerSequenceGradient`; the result is sequence-major so
            that it flattens to ``[N * k, n_tensor]`` without a copy.
        excluded_by_default: parameters of this layer type are left out unless ``--include``
            names them (embeddings and normalisation layers, as in the paper).
        slices_leading: ``per_sequence_gradient`` takes a fifth argument ``leading`` (a slice of
            the parameter's first dimension) and computes only that part.
        writes_into: ``per_sequence_gradient`` takes ``out=`` (see :data:`PerSequenceGradient`),
            so that blocks are written into a reused buffer rather than a new allocation each.
    """

    name: str
    per_sequence_gradient: PerSequenceGradient
    excluded_by_default: bool = False
    slices_leading: bool = False
    writes_into: bool = False

    def gradient(self, module: nn.Module, attribute: str, x: torch.Tensor, gy: torch.Tensor,
                 leading: slice, out: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, k, hi - lo, *param.shape[1:]]``: the per-sequence gradients of the entries of the
        parameter whose first index lies in ``leading = slice(lo, hi)`` (a rule that cannot slice
        computes the whole parameter, then keeps the slice). ``out``, a tensor of that shape, is
        filled (and returned) by the rules that can write into it; others ignore it."""
        if self.slices_leading:
            extra = {"out": out} if self.writes_into and out is not None else {}
            return self.per_sequence_gradient(module, attribute, x, gy, leading, **extra)
        return self.per_sequence_gradient(module, attribute, x, gy)[:, :, leading]


#: layer type -> rule; a key is a class or, for classes of optional libraries, its
#: ``"module.QualifiedName"`` (matched without importing the library)
LAYER_RULES: dict[type | str, LayerRule] = {}


def register_layer_rule(layer: type | str, rule: LayerRule) -> None:
    """Make the parameters of ``layer`` (a module class, or its ``"module.QualifiedName"``) and of
    its subclasses supported, with per-example gradients computed by ``rule``."""
    LAYER_RULES[layer] = rule


def layer_rule(module: nn.Module) -> LayerRule | None:
    """The rule registered for ``module``'s class or its nearest registered base class, if any.

    Copies of GPT-2's ``Conv1D`` outside transformers (models loaded with ``trust_remote_code``,
    forks) are recognised by their name and ``nf`` attribute, as transformers' own class.
    """
    for cls in type(module).__mro__:
        rule = LAYER_RULES.get(cls) or LAYER_RULES.get(f"{cls.__module__}.{cls.__qualname__}")
        if rule is not None:
            return rule
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return CONV1D_RULE
    return None


def supported_layers() -> list[str]:
    """Names of the layer types that have a rule, in registration order, without repeats."""
    return list(dict.fromkeys(rule.name for rule in LAYER_RULES.values()))


def is_default_excluded(module: nn.Module) -> bool:
    """Embeddings and normalisation layers (any class named ``*Norm*``) are left out by default."""
    rule = layer_rule(module)
    return (rule is not None and rule.excluded_by_default) or "norm" in type(module).__name__.lower()


def flatten_positions(t: torch.Tensor) -> torch.Tensor:
    """``[N, ..., f] -> [N, T, f]``: every position of a sequence in one axis."""
    return t.reshape(t.shape[0], -1, t.shape[-1])


def bias_gradient(gy: torch.Tensor) -> torch.Tensor:
    """Bias of any affine layer: ``sum_t gy`` as ``[N, k, out]``."""
    return gy.sum(dim=2).transpose(0, 1)


ALL = slice(None)


def linear_gradient(module: nn.Module, attribute: str, x: torch.Tensor, gy: torch.Tensor,
                    leading: slice = ALL, out: torch.Tensor | None = None) -> torch.Tensor:
    """``nn.Linear``: weight ``[out, in]`` gets ``sum_t gy[t] x[t]^T``, shape ``[N, k, out, in]``
    (the outputs ``leading`` only: ``[N, k, len(leading), in]``), written into ``out`` when given
    (the bias's small ``[N, k, out]`` never is)."""
    gy = gy[..., leading]
    if attribute == "bias":
        return bias_gradient(gy)
    # [N, k, out, T] @ [N, 1, T, in]: one batched product per sequence, all k rows at once
    return torch.matmul(gy.permute(1, 0, 3, 2), flatten_positions(x).to(gy.dtype)[:, None], out=out)


def conv1d_gradient(module: nn.Module, attribute: str, x: torch.Tensor, gy: torch.Tensor,
                    leading: slice = ALL, out: torch.Tensor | None = None) -> torch.Tensor:
    """GPT-2's ``Conv1D`` (a linear layer with a transposed ``[in, out]`` weight): ``[N, k, in, out]``
    (the inputs ``leading`` only, the weight's first dimension; the bias's is its outputs), written
    into ``out`` when given."""
    if attribute == "bias":
        return bias_gradient(gy[..., leading])
    # [N, 1, in, T] @ [N, k, T, out]
    inputs = flatten_positions(x)[..., leading].to(gy.dtype).transpose(1, 2)[:, None]
    return torch.matmul(inputs, gy.transpose(0, 1), out=out)


def layer_norm_gradient(module: nn.Module, attribute: str, x: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """``nn.LayerNorm``: weight gets ``sum_t gy[t] * x_hat[t]`` with ``x_hat`` the normalised input,
    bias ``sum_t gy[t]``; both ``[N, k, *normalized_shape]``."""
    n, rows, shape = gy.shape[1], gy.shape[0], module.normalized_shape
    if attribute == "bias":
        return bias_gradient(gy).reshape(n, rows, *shape)
    x_hat = nn.functional.layer_norm(x, shape, None, None, module.eps)
    return torch.einsum("rnto,nto->nro", gy, flatten_positions(x_hat).to(gy.dtype)).reshape(n, rows, *shape)


def embedding_gradient(module: nn.Module, attribute: str, ids: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """``nn.Embedding``: ``gy[t]`` scattered into the row of token ``ids[t]`` (padding ignored).

    Notes:
        Memory: a dense ``[N, k, num_embeddings, embedding_dim]`` result.
    """
    rows, n = gy.shape[0], gy.shape[1]
    ids = ids.reshape(n, -1)
    weights = gy.transpose(0, 1)  # [N, k, T, D]
    if module.padding_idx is not None:
        weights = weights * (ids != module.padding_idx)[:, None, :, None].to(gy.dtype)
    grad = torch.zeros(n, rows, module.num_embeddings, module.embedding_dim, dtype=gy.dtype, device=gy.device)
    index = ids[:, None, :, None].expand(n, rows, ids.shape[1], module.embedding_dim)
    return grad.scatter_add_(2, index, weights)


register_layer_rule(nn.Linear, LayerRule(name="Linear", per_sequence_gradient=linear_gradient, slices_leading=True,
                                         writes_into=True))
CONV1D_RULE = LayerRule(name="Conv1D", per_sequence_gradient=conv1d_gradient, slices_leading=True, writes_into=True)
register_layer_rule("transformers.pytorch_utils.Conv1D", CONV1D_RULE)
register_layer_rule("transformers.modeling_utils.Conv1D", CONV1D_RULE)  # its home in older releases
register_layer_rule(nn.Embedding, LayerRule(name="Embedding", per_sequence_gradient=embedding_gradient,
                                            excluded_by_default=True))
# excluded by default through its name, like every normalisation layer (a subclass named otherwise is not)
register_layer_rule(nn.LayerNorm, LayerRule(name="LayerNorm", per_sequence_gradient=layer_norm_gradient))
