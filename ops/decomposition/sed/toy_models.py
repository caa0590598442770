"""The sparse-eigendecomposition draft's two toy models, trained from a seed, with their data, as
``build_store`` takes them (``head="regression"``, examples ``{"input": tensor}``).

- **Toy model of superposition** (Elhage et al. 2022): 5 features, 2 hidden units, tied weights,
  ``y = ReLU(Wᵀ W x + b)``; features uniform on [0, 1], each active with probability 0.05. It
  stores the 5 features as a pentagon in its 2 hidden dimensions.
- **XOR**: 2 inputs -> 2 GELU units, output their sum, fitted to XOR on the four corners.

The tied decoder ``h -> h W + b`` (``W`` the encoder's ``[hidden, features]`` weight) is a layer of
its own with the per-example gradient rule of a transposed linear layer, so the builder's
closed-form per-example gradients cover it (the tied weight's gradient sums both layers').
"""

from __future__ import annotations

import torch
from torch import nn

from npeff.ops.pef.layers import LayerRule, conv1d_gradient, register_layer_rule


class TiedDecoder(nn.Module):
    """``h [.., hidden] -> h W + b [.., features]`` with ``W`` the encoder's weight, shared."""

    def __init__(self, weight: nn.Parameter):
        super().__init__()
        self.weight = weight  # the same Parameter as the encoder's: one tensor, two owners
        self.bias = nn.Parameter(torch.zeros(weight.shape[1], dtype=weight.dtype))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.weight + self.bias


register_layer_rule(TiedDecoder, LayerRule(name="TiedDecoder", per_sequence_gradient=conv1d_gradient,
                                             slices_leading=True))


class ToySuperposition(nn.Module):
    """``x [B, features] -> ReLU(Wᵀ W x + b) [B, features]`` with ``W`` ``[hidden, features]``."""

    def __init__(self, features: int = 5, hidden: int = 2):
        super().__init__()
        self.encoder = nn.Linear(features, hidden, bias=False)
        self.decoder = TiedDecoder(self.encoder.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.decoder(self.encoder(x)))


def sparse_features(count: int, generator: torch.Generator, *, features: int = 5, density: float = 0.05
                    ) -> torch.Tensor:
    """``[count, features]``: each feature uniform on [0, 1] and non-zero with probability ``density``."""
    values = torch.rand(count, features, generator=generator)
    return values * (torch.rand(count, features, generator=generator) < density)


def train_superposition(*, seed: int = 0, steps: int = 4000, batch_size: int = 1024, lr: float = 1e-2,
                        features: int = 5, hidden: int = 2, density: float = 0.05) -> ToySuperposition:
    """A toy model of superposition trained with Adam on the squared reconstruction error."""
    generator = torch.Generator().manual_seed(seed)
    model = ToySuperposition(features, hidden)
    with torch.no_grad():
        model.encoder.weight.copy_(torch.randn(hidden, features, generator=generator) * 0.5)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x = sparse_features(batch_size, generator, features=features, density=density)
        loss = ((model(x) - x) ** 2).sum(dim=1).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return model.eval()


def one_hot_examples(per_feature: int, generator: torch.Generator, *, features: int = 5) -> list[dict]:
    """Examples with exactly one active feature (``per_feature`` of each, value uniform on (0, 1]),
    as ``{"input": [features] tensor, "label": i}`` (the label is the active feature), feature after
    feature."""
    examples = []
    for feature in range(features):
        for value in 1 - torch.rand(per_feature, generator=generator):  # in (0, 1]: never all zero
            x = torch.zeros(features)
            x[feature] = value
            examples.append({"input": x, "label": feature})
    return examples


class XorNetwork(nn.Module):
    """``x [B, 2] -> sum_j GELU(w_j · x + b_j) [B]``: 2 GELU units and their sum."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.hidden(x)).sum(dim=1)


#: the four corners and their XOR
XOR_INPUTS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
XOR_TARGETS = torch.tensor([0.0, 1.0, 1.0, 0.0])


def train_xor(*, seed: int = 0, steps: int = 3000, lr: float = 3e-2) -> XorNetwork:
    """The XOR network fitted with Adam on the squared error over the four corners."""
    generator = torch.Generator().manual_seed(seed)
    model = XorNetwork()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator))
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = ((model(XOR_INPUTS) - XOR_TARGETS) ** 2).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return model.eval()


def xor_examples() -> list[dict]:
    """The four corners as ``{"input": [2] tensor, "label": XOR}``."""
    return [{"input": x, "label": int(y)} for x, y in zip(XOR_INPUTS, XOR_TARGETS)]


__all__ = ["TiedDecoder", "ToySuperposition", "XOR_INPUTS", "XOR_TARGETS", "XorNetwork", "one_hot_examples",
           "sparse_features", "train_superposition", "train_xor", "xor_examples"]
