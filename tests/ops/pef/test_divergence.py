"""Divergence gradients (``PefSpec(kind="divergence")``, ``npeff build --divergence-gradient``):
against float64 brute-force gradients of the divergence itself, for classifiers and regression
heads, and the refused combinations."""

import math

import numpy as np
import pytest
import torch

from npeff.errors import InvalidArgumentError
from npeff.ops import PefSpec, build_store
from npeff.ops.decomposition.sed.toy_models import ToySuperposition, XorNetwork, one_hot_examples, xor_examples
from npeff.ops.pef.spec import kl_to_uniform_rows
from tests import tolerances
from tests.fixtures import REVIEWS
from tests.ops.pef.references import TASKS, load, manual_log_probs, rows_of

PEF_RTOL = tolerances.FLOAT32_STORED_PEF["rtol"]


def flat_gradient(value, params):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, params)])


def check_rows(store, references):
    """Stored rows (float32, as computed) against float64 references, relative to each one's size
    (a zero reference, e.g. an input on a ReLU's flat side, stored as zeros)."""
    for b, reference in enumerate(references):
        scale = float(reference.norm())
        if scale == 0:
            assert not rows_of(store, b).any() and store.examples["pef_norm"][b].as_py() == 0
            continue
        np.testing.assert_allclose(rows_of(store, b)[0].numpy() / scale, (reference / scale).numpy(),
                                   **tolerances.FLOAT32_STORED_ROWS)
        assert store.examples["pef_norm"][b].as_py() == pytest.approx(scale ** 2, rel=PEF_RTOL)


@pytest.mark.parametrize("name,formulation", [("gpt2", "label-tokens"), ("llama", "suffixes"),
                                              ("classifier", "classifier")])
def test_classifier_rows_are_the_gradient_of_kl_to_uniform(tmp_path, tiny_models, name, formulation):
    model, tokenizer = load(tiny_models, name, formulation)
    task = TASKS[formulation]
    store = build_store(model, REVIEWS, task, tmp_path / "s", tokenizer=tokenizer, projection="none",
                        pef=PefSpec(kind="divergence"))
    assert store.rank == 1 and store.config.kind == "divergence"
    spec = store.manifest["pef_spec"]
    assert spec["normalization"] == "none" and spec["divergence"].startswith("KL(p || uniform)")
    params = dict(model.named_parameters())
    included = [params[n] for n in store.manifest["parameter_layout"]["names"]]
    references = []
    for example in REVIEWS:
        log_p = manual_log_probs(model, tokenizer, task, example)
        k = log_p.shape[0]
        kl = (log_p.exp() * (log_p + math.log(k))).sum()  # KL(p || uniform), differentiated in full
        references.append(flat_gradient(kl, included))
    check_rows(store, references)


def test_the_objective_row_is_kl_to_uniform_for_a_vanishing_class():
    logits = torch.tensor([[2.0, -1.0, -1e4]], dtype=torch.float64, requires_grad=True)  # p_3 underflows to 0
    row = kl_to_uniform_rows(torch.log_softmax(logits, dim=1))
    (grad,) = torch.autograd.grad(row.sum(), logits)
    p = torch.softmax(logits.detach(), dim=1)
    log_p = torch.log_softmax(logits.detach(), dim=1)
    terms = torch.where(p > 0, p * (log_p + math.log(3)), torch.zeros_like(p))
    expected = terms - p * terms.sum()  # d/dz_j of KL(p || uniform) = w_j - p_j sum_y w_y, w = p log(K p)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad, expected)


def test_regression_rows_are_the_gradient_of_the_summed_outputs(tmp_path):
    model = ToySuperposition().double()
    with torch.no_grad():
        model.encoder.weight.copy_(torch.randn(2, 5, generator=torch.Generator().manual_seed(0)))
        model.decoder.bias.fill_(-0.1)
    examples = one_hot_examples(4, torch.Generator().manual_seed(1))
    store = build_store(model, examples, None, tmp_path / "tms", head="regression", projection="none",
                        pef=PefSpec(kind="divergence"), batch_size=3)
    assert store.config.kind == "divergence" and store.manifest["pef_spec"]["num_outputs"] == 5
    assert store.manifest["parameter_layout"]["names"] == ["encoder.weight", "decoder.bias"]  # tied: one tensor
    params = [model.encoder.weight, model.decoder.bias]
    references = [flat_gradient(model(e["input"].double()[None]).sum(), params) for e in examples]
    assert sum(float(r.norm()) > 0 for r in references) >= 10  # most inputs reach a ReLU's active side
    check_rows(store, references)
    table = store.examples
    assert table["prediction"].null_count == len(examples) and table["probs"].null_count == len(examples)
    assert table["label"].to_pylist() == [e["label"] for e in examples]


def test_a_scalar_regression_output(tmp_path):
    torch.manual_seed(3)
    model = XorNetwork().double()
    store = build_store(model, xor_examples(), None, tmp_path / "xor", head="regression", projection="none",
                        pef=PefSpec(kind="divergence"))
    assert store.manifest["pef_spec"]["num_outputs"] == 1
    params = [model.hidden.weight, model.hidden.bias]
    check_rows(store, [flat_gradient(model(e["input"].double()[None]).sum(), params) for e in xor_examples()])


def test_projected_divergence_rows_are_the_projection_of_the_exact_ones(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    exact = build_store(model, REVIEWS, task, tmp_path / "exact", tokenizer=tokenizer, projection="none",
                        pef=PefSpec(kind="divergence"))
    projected = build_store(model, REVIEWS, task, tmp_path / "ssp", tokenizer=tokenizer, dim=256, seed=4,
                            pef=PefSpec(kind="divergence"))
    from npeff.cuda_ops import project

    rows = torch.from_numpy(exact.read()[:, 0, :])
    expected = project(rows, d=256, seed=4, n_total=rows.shape[1]).numpy()
    got = projected.read()[:, 0, :]
    np.testing.assert_allclose(got, expected, atol=tolerances.FLOAT32_PROJECTION_REGROUPED["rtol"] * np.abs(expected).max(),
                               rtol=tolerances.FLOAT32_PROJECTION_REGROUPED["rtol"])


@pytest.mark.parametrize("call,message", [
    (lambda m, p: build_store(m, xor_examples(), None, p, head="regression", projection="none"),
     "divergence gradients only"),
    (lambda m, p: build_store(m, xor_examples(), None, p, head="logits", pef=PefSpec(kind="divergence")),
     "head must be classifier or regression"),
    (lambda m, p: build_store(m, [], None, p, head="regression", pef=PefSpec(kind="divergence")),
     "no examples"),
    (lambda m, p: PefSpec(kind="divergence", svd_rank=1), "does not apply to --divergence-gradient"),
])
def test_refused(tmp_path, call, message):
    with pytest.raises(InvalidArgumentError, match=message):
        call(XorNetwork(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_regression_model_that_returns_a_wrong_shape(tmp_path):
    class Bad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 3)

        def forward(self, x):
            return self.layer(x)[None]  # [1, B, 3]

    from npeff.ops.pef.tasks import TaskError

    with pytest.raises(TaskError, match="must return outputs"):
        build_store(Bad(), xor_examples(), None, tmp_path / "out", head="regression", pef=PefSpec(kind="divergence"))
