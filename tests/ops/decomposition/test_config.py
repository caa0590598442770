"""DecomposeConfig validates itself and round-trips through a dict."""

import pytest

from npeff.errors import InvalidArgumentError
from npeff.ops import DecomposeConfig


def test_round_trip():
    config = DecomposeConfig(n_components=5, warmup_steps=2, joint_lr=0.1, dtype="float64")
    assert DecomposeConfig.from_dict(config.to_dict()) == config
    assert config.total_steps == 2 + 3000


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_components=0), "number of components must be an integer >= 1"),
    (dict(n_components=True), "number of components must be an integer >= 1"),
    (dict(n_components=2.0), "number of components must be an integer >= 1"),
    (dict(n_components=2, warmup_steps=-1), "warmup_steps must be an integer >= 0"),
    (dict(n_components=2, joint_steps=1.5), "joint_steps must be an integer >= 0"),
    (dict(n_components=2, warmup_lr=0), "warmup_lr must be > 0"),
    (dict(n_components=2, joint_lr=float("nan")), "joint_lr must be > 0"),
    (dict(n_components=2, dtype="float16"), "dtype must be float32 or float64"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_bad_settings(kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        DecomposeConfig(**kwargs)


def test_unknown_keys_are_refused():
    with pytest.raises(InvalidArgumentError, match="unknown decomposition settings"):
        DecomposeConfig.from_dict({"n_components": 2, "learning_rate": 1})
