"""perturb() end to end on a tiny classifier: a store built by npeff, a decomposition, perturbations
along its components, results written and resumed; and what it refuses."""

import json

import numpy as np
import pytest
import torch

from npeff.errors import IncompatibleStoresError, InvalidArgumentError
from npeff.ops.perturb import perturb
from npeff.ops.perturb.run import Perturber, choose_components
from npeff.ops.perturb.settings import PerturbSettings
from npeff.store import open_store


def test_ratios_are_written_and_a_rerun_resumes(classifier_decomposition, tmp_path, monkeypatch):
    settings = PerturbSettings(top=4, baseline=8, relative_magnitude=0.05)
    summary = perturb(classifier_decomposition / "decomposition", out=tmp_path / "p", settings=settings,
                      save_directions=True)
    assert summary["n_components"] == 3 and [r["component"] for r in summary["components"]] == [0, 1, 2]
    for record in summary["components"]:
        assert record["kl_ratio"] == max(record["kl_ratio_plus"], record["kl_ratio_minus"])
        assert record["kl_ratio_plus"] == pytest.approx(record["kl_top_plus"] / record["kl_baseline_plus"])
        assert record["u_nonzero"] > 0 and record["fpc_iterations"] >= 1 and record["n_top"] <= 4
    ratios = [r["kl_ratio"] for r in summary["components"]]
    assert summary["kl_ratio_geomean"] == pytest.approx(float(np.exp(np.mean(np.log(ratios)))))
    written = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert written["kl_ratio_geomean"] == pytest.approx(summary["kl_ratio_geomean"])
    assert sorted(p.name for p in (tmp_path / "p" / "directions").iterdir()) == [f"c-00000{i}.npz" for i in range(3)]

    import npeff.ops.perturb.run as run_module

    monkeypatch.setattr(run_module.Perturber, "evaluate", lambda *a, **k: pytest.fail("resumed work was redone"))
    again = perturb(classifier_decomposition / "decomposition", out=tmp_path / "p", settings=settings)
    assert again["kl_ratio_geomean"] == pytest.approx(summary["kl_ratio_geomean"])


def test_the_model_is_unchanged_by_an_evaluation(classifier_decomposition, tiny_models):
    from npeff.ops.pef import load_model_and_tokenizer

    store = open_store(classifier_decomposition / "store")
    model, tokenizer = load_model_and_tokenizer(tiny_models["classifier"], "classifier")
    before = {name: value.clone() for name, value in model.state_dict().items()}
    perturber = Perturber(model, tokenizer, store, PerturbSettings(top=2, baseline=5, magnitude=1.0))
    u = torch.randn(perturber.layout.n_total, generator=torch.Generator().manual_seed(0))
    record = perturber.evaluate(u, [0, 1])
    assert record["kl_top_plus"] > 0 and record["kl_baseline_minus"] > 0
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())


def test_a_target_kl_is_reached_on_the_baseline(classifier_decomposition, tiny_models):
    from npeff.ops.pef import load_model_and_tokenizer

    store = open_store(classifier_decomposition / "store")
    model, tokenizer = load_model_and_tokenizer(tiny_models["classifier"], "classifier")
    perturber = Perturber(model, tokenizer, store, PerturbSettings(top=2, baseline=6, target_kl=1e-4))
    u = torch.randn(perturber.layout.n_total, generator=torch.Generator().manual_seed(1))
    magnitude, kl = perturber.magnitude_for(u)
    assert kl == pytest.approx(1e-4, rel=0.25)
    assert perturber.mean_kl(perturber.baseline, u, magnitude) == pytest.approx(kl, rel=1e-9)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(components=[7]), InvalidArgumentError, "component 7 is out of range: the decomposition has 3"),
    (dict(sample=0), InvalidArgumentError, "--sample must be >= 1"),
    (dict(model="{models}/llama"), InvalidArgumentError, "no parameter 'transformer.h.0.mlp"),
    (dict(device="tpu"), InvalidArgumentError, "unknown device"),
], ids=["component", "sample", "other-model", "device"])
def test_bad_input(classifier_decomposition, tiny_models, tmp_path, kwargs, error, message):
    kwargs = {key: value.format(models=str(tiny_models["gpt2"]).rsplit("/", 1)[0]) if isinstance(value, str) else value
              for key, value in kwargs.items()}
    with pytest.raises(error, match=message):
        perturb(classifier_decomposition / "decomposition", out=tmp_path / "p", settings=PerturbSettings(top=2, baseline=4), **kwargs)


def test_a_decomposition_of_another_store_is_refused(classifier_decomposition, tmp_path):
    from npeff.store import create_store

    other = create_store(tmp_path / "other", rank=1, dim=4, projection={"kind": "external"})
    other.append(np.ones((12, 1, 4), np.float32))
    with pytest.raises(IncompatibleStoresError):
        perturb(classifier_decomposition / "decomposition", store=other.finalize(), settings=PerturbSettings(top=2, baseline=4))


@pytest.mark.parametrize("components, sample, expected", [([2, 0, 2], None, [2, 0]), (None, None, [0, 1, 2, 3])])
def test_choose_components(components, sample, expected):
    assert choose_components(4, components, sample, seed=0) == expected


def test_a_sample_is_seeded():
    first = choose_components(100, None, 5, seed=3)
    assert first == choose_components(100, None, 5, seed=3) and len(set(first)) == 5
    assert first != choose_components(100, None, 5, seed=4)
