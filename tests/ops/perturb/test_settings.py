"""PerturbSettings: one magnitude rule, validated values, a dict round trip."""

import pytest

from npeff.errors import InvalidArgumentError
from npeff.ops.perturb.settings import DEFAULT_TARGET_KL, PerturbSettings


def test_the_default_magnitude_rule_is_a_target_kl():
    settings = PerturbSettings()
    assert settings.target_kl == DEFAULT_TARGET_KL and settings.magnitude is None
    assert PerturbSettings(**settings.to_dict()) == settings
    assert PerturbSettings(magnitude=20.0).target_kl is None


@pytest.mark.parametrize("kwargs, message", [
    (dict(magnitude=1.0, target_kl=0.1), "give one of --magnitude, --relative-magnitude and --target-kl"),
    (dict(magnitude=0.0), "magnitude must be a positive number"),
    (dict(relative_magnitude=-0.1), "relative magnitude must be a positive number"),
    (dict(target_kl=float("inf")), "target kl must be a positive number"),
    (dict(mu=0), "mu must be a positive number"),
    (dict(threshold=1.5), r"rejection threshold is a \|cosine\| in \[0, 1\]"),
    (dict(top=0), "top must be an integer >= 1"),
    (dict(baseline=2.5), "baseline must be an integer >= 1"),
], ids=["two-rules", "magnitude", "relative", "target", "mu", "threshold", "top", "baseline"])
def test_bad_settings(kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        PerturbSettings(**kwargs)
