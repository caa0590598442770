"""Per-layer gradient rules (ops/pef/layers.py): the built-in rules against brute force, the
registry's lookup, and a new layer type supported by one registration."""

import re

import pytest
import torch
from torch import nn

from npeff.errors import InvalidArgumentError
from npeff.ops import build_store
from npeff.ops.pef import LayerRule, register_layer_rule
from npeff.ops.pef import layers
from npeff.ops.pef.layers import supported_layers
from tests import tolerances
from tests.fixtures import REVIEWS
from tests.ops.pef.references import TASKS, brute_force, gram_distance, load, lrm_rows, rows_of, unit_pef

PEF_RTOL = tolerances.FLOAT32_STORED_PEF["rtol"]


class Scale(nn.Module):
    """A layer npeff has no rule for: ``y = x * weight`` elementwise."""

    def __init__(self, features):
        super().__init__()
        self.weight = nn.Parameter(torch.linspace(0.5, 1.5, features))

    def forward(self, x):
        return x * self.weight


def scale_gradient(module, attribute, x, gy):
    """``sum_t gy[t] * x[t]`` as ``[N, k, features]``."""
    return torch.einsum("rnto,nto->nro", gy, layers.flatten_positions(x).to(gy.dtype))


def scaled_mlp():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 5), Scale(5), nn.Tanh(), nn.Linear(5, 3)).double()
    examples = [{"input": torch.randn(4, dtype=torch.float64), "label": i % 3} for i in range(5)]
    return model, examples


@pytest.fixture
def registry(monkeypatch):
    """The layer registry, restored after the test."""
    monkeypatch.setattr(layers, "LAYER_RULES", dict(layers.LAYER_RULES))
    return layers.LAYER_RULES


def test_included_embeddings_and_norms_match_brute_force(tmp_path, tiny_models):
    """GPT-2's token embedding is tied to the LM head: its gradient sums the Embedding and Linear rules."""
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    store = build_store(model, REVIEWS[:3], task, tmp_path / "s", tokenizer=tokenizer, projection="none",
                        include=("transformer.wte.*", "transformer.h.0.ln_1.*"))
    names = store.manifest["parameter_layout"]["names"]
    assert names == ["transformer.wte.weight", "transformer.h.0.ln_1.weight", "transformer.h.0.ln_1.bias"]
    for b in range(3):
        reference, _ = brute_force(model, tokenizer, task, REVIEWS[b], names)
        assert gram_distance(rows_of(store, b), unit_pef(reference)) < PEF_RTOL


def test_unsupported_layer_is_refused_with_the_exclude_hint(tmp_path):
    model, examples = scaled_mlp()
    supported = ", ".join(supported_layers())  # the built-in rules, and any a loaded module registered
    assert supported.startswith("Linear, Conv1D, Embedding, LayerNorm")
    with pytest.raises(InvalidArgumentError, match=r"'1.weight' belongs to a Scale layer.*no per-example "
                                                   rf"gradient rule \(supported: {re.escape(supported)}\); "
                                                   r"leave it out with --exclude '1.weight'"):
        build_store(model, examples, None, tmp_path / "s", num_classes=3, projection="none")
    assert not (tmp_path / "s").exists()
    store = build_store(model, examples, None, tmp_path / "s", num_classes=3, projection="none",
                        exclude=("1.weight",))
    assert store.manifest["parameter_layout"]["names"] == ["0.weight", "0.bias", "3.weight", "3.bias"]


def test_registered_rule_makes_a_new_layer_supported(tmp_path, registry):
    register_layer_rule(Scale, LayerRule(name="Scale", per_sequence_gradient=scale_gradient))
    model, examples = scaled_mlp()
    store = build_store(model, examples, None, tmp_path / "s", num_classes=3, projection="none", batch_size=2)
    assert "1.weight" in store.manifest["parameter_layout"]["names"]
    params = list(model.parameters())
    for b, example in enumerate(examples):
        reference = lrm_rows(torch.log_softmax(model(example["input"][None])[0], 0), params)
        assert gram_distance(rows_of(store, b), unit_pef(reference)) < PEF_RTOL
    assert "Scale" in layers.supported_layers()


class ScaleWithExtra(Scale):
    """A layer returning a tuple (its output and the weight), which npeff cannot tap."""

    def forward(self, x):
        return x * self.weight, self.weight


class FirstOf(nn.Module):
    def forward(self, pair):
        return pair[0]


def test_registered_layer_with_a_tuple_output_is_refused_clearly(tmp_path, registry):
    register_layer_rule(ScaleWithExtra, LayerRule(name="ScaleWithExtra", per_sequence_gradient=scale_gradient))
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 5), ScaleWithExtra(5), FirstOf(), nn.Linear(5, 3)).double()
    examples = [{"input": torch.randn(4, dtype=torch.float64), "label": i % 3} for i in range(3)]
    with pytest.raises(InvalidArgumentError, match="a ScaleWithExtra layer returned tuple, not a floating-point "
                                                   "tensor"):
        build_store(model, examples, None, tmp_path / "s", num_classes=3, projection="none")
    assert not (tmp_path / "s").exists()


def test_registered_rule_can_exclude_its_layer_by_default(tmp_path, registry):
    register_layer_rule(Scale, LayerRule(name="Scale", per_sequence_gradient=scale_gradient,
                                         excluded_by_default=True))
    model, examples = scaled_mlp()
    store = build_store(model, examples, None, tmp_path / "s", num_classes=3, projection="none")
    assert "1.weight" not in store.manifest["parameter_layout"]["names"]


def test_rules_are_found_for_subclasses_and_by_qualified_name():
    from transformers.pytorch_utils import Conv1D

    class MyLinear(nn.Linear):
        pass

    assert layers.layer_rule(MyLinear(2, 3)).name == "Linear"
    assert layers.layer_rule(Conv1D(3, 2)).name == "Conv1D"
    assert layers.layer_rule(Scale(2)) is None and layers.layer_rule(nn.Tanh()) is None


def test_copies_of_gpt2_conv1d_are_recognised_by_name():
    """Models with remote code carry their own copy of GPT-2's Conv1D class."""
    from transformers.pytorch_utils import Conv1D as Original

    class Conv1D(nn.Module):  # a copy of GPT-2's layer, as remote model code carries
        def __init__(self):
            super().__init__()
            self.nf = 2

    assert layers.layer_rule(Conv1D()) is layers.layer_rule(Original(2, 3))
    NotConv1D = type("Conv1D", (nn.Module,), {})  # the name alone is not enough
    assert layers.layer_rule(NotConv1D()) is None


@pytest.mark.parametrize("module,excluded", [
    (nn.Embedding(3, 2), True), (nn.LayerNorm(2), True), (nn.Linear(2, 2), False), (nn.RMSNorm(2), True),
    (Scale(2), False), (type("Centered", (nn.LayerNorm,), {})(2), False),  # normalisation goes by name
])
def test_embeddings_and_norms_are_excluded_by_default(module, excluded):
    assert layers.is_default_excluded(module) == excluded
