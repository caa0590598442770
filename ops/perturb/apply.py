"""Moving a model's parameters along a direction in parameter space, and putting them back exactly.

A direction ``u`` ``[n]`` is laid out as the store's parameter layout says (names, shapes, offsets of
the included parameters, ``n`` in all); :func:`perturbed` adds ``magnitude * u / ||u||`` to those
parameters for the duration of a ``with`` block and restores the saved values bit for bit when the
block ends, also when it raises.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import nn

from npeff.errors import InvalidArgumentError
from npeff.store.manifest import ParameterLayout


def layout_parameters(model: nn.Module, layout: ParameterLayout) -> list[nn.Parameter]:
    """The model's parameters named by ``layout``, in its order; refuses a model that lacks one or
    whose shape differs (the model is not the one the store was built from)."""
    parameters = []
    for name, shape in zip(layout.names, layout.shapes):
        try:
            parameter = model.get_parameter(name)
        except AttributeError:
            raise InvalidArgumentError(
                f"the model has no parameter {name!r} of the store's parameter layout; give the model the "
                f"store was built from (--model)") from None
        if tuple(parameter.shape) != tuple(shape):
            raise InvalidArgumentError(
                f"parameter {name!r} has shape {list(parameter.shape)} in the model but {list(shape)} in the "
                f"store's parameter layout; give the model the store was built from (--model)")
        parameters.append(parameter)
    return parameters


def parameter_norm(model: nn.Module, layout: ParameterLayout) -> float:
    """``||θ||`` over the included parameters (float64 accumulation)."""
    return math.sqrt(sum(float(p.detach().double().square().sum()) for p in layout_parameters(model, layout)))


@contextlib.contextmanager
def perturbed(model: nn.Module, layout: ParameterLayout, u: torch.Tensor, magnitude: float) -> Iterator[None]:
    """``θ <- θ + magnitude * u / ||u||`` on the parameters of ``layout`` inside the block.

    Args:
        model: the model the store was built from.
        layout: the store's parameter layout (``u``'s coordinates).
        u: ``[n]`` direction (any device and float dtype; not modified).
        magnitude: the L2 norm of the change (the sign gives the direction).

    Notes:
        Memory: a copy of the included parameters (``n`` values in the model's dtype) while inside.
        The saved values are copied back on exit, so the model is bit-identical afterwards.
    """
    parameters = layout_parameters(model, layout)
    if u.ndim != 1 or u.shape[0] != layout.n_total:
        raise InvalidArgumentError(f"a direction must have the layout's {layout.n_total} entries, got {list(u.shape)}")
    norm = float(u.double().norm())
    if not math.isfinite(norm) or norm == 0.0:
        raise InvalidArgumentError(f"cannot perturb along a direction of norm {norm}")
    saved = [parameter.detach().clone() for parameter in parameters]
    scale = magnitude / norm
    try:
        with torch.no_grad():
            for parameter, offset in zip(parameters, layout.offsets):
                block = u[offset:offset + parameter.numel()].view(parameter.shape)
                parameter.add_(block.to(device=parameter.device, dtype=torch.float64).mul(scale).to(parameter.dtype))
        yield
    finally:
        with torch.no_grad():
            for parameter, value in zip(parameters, saved):
                parameter.copy_(value)
