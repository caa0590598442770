"""Perturbing a model's included parameters along a direction, and restoring them bit for bit."""

import pytest
import torch
from torch import nn

from npeff.errors import InvalidArgumentError
from npeff.ops.perturb.apply import layout_parameters, parameter_norm, perturbed
from npeff.store.manifest import ParameterLayout


def model_and_layout():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    layout = ParameterLayout.from_shapes([("0.weight", (4, 3)), ("2.bias", (2,))])
    return model, layout


def test_the_change_is_the_direction_scaled_to_the_magnitude():
    model, layout = model_and_layout()
    before = [p.detach().clone() for p in layout_parameters(model, layout)]
    u = torch.arange(14, dtype=torch.float64) - 6.0
    with perturbed(model, layout, u, magnitude=0.5):
        after = layout_parameters(model, layout)
        change = torch.cat([(a - b).flatten().double() for a, b in zip(after, before)])
        expected = 0.5 * u / u.norm()
        torch.testing.assert_close(change, expected, rtol=1e-6, atol=1e-7)  # float32 parameters
        assert torch.equal(model[2].weight, model[2].weight)  # untouched parameters stay
    for parameter, value in zip(layout_parameters(model, layout), before):
        assert torch.equal(parameter, value)  # bit for bit


def test_parameters_are_restored_after_an_exception():
    model, layout = model_and_layout()
    state = {name: value.clone() for name, value in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="mid-evaluation"):
        with perturbed(model, layout, torch.ones(14), magnitude=3.0):
            raise RuntimeError("mid-evaluation")
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name


def test_parameter_norm():
    model, layout = model_and_layout()
    expected = torch.cat([model[0].weight.flatten(), model[2].bias]).detach().double().norm()
    assert parameter_norm(model, layout) == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize("layout, message", [
    (ParameterLayout.from_shapes([("5.weight", (4, 3))]), "no parameter '5.weight'"),
    (ParameterLayout.from_shapes([("0.weight", (3, 4))]), r"has shape \[4, 3\] in the model but \[3, 4\]"),
], ids=["missing", "shape"])
def test_a_model_that_does_not_match_the_layout(layout, message):
    model, _ = model_and_layout()
    with pytest.raises(InvalidArgumentError, match=message):
        layout_parameters(model, layout)


@pytest.mark.parametrize("u, message", [(torch.ones(13), "14 entries"), (torch.zeros(14), "norm 0"),
                                        (torch.full((14,), float("nan")), "norm nan")], ids=["length", "zero", "nan"])
def test_bad_directions(u, message):
    model, layout = model_and_layout()
    with pytest.raises(InvalidArgumentError, match=message):
        with perturbed(model, layout, u, 1.0):
            pass
