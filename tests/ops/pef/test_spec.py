"""PEF rows (ops/pef/spec.py): the gradient kind, expectation projections, SVD reduction,
normalisation, and the refused specs."""

import numpy as np
import pytest
import torch

from npeff.errors import InvalidArgumentError
from npeff.ops import PefSpec, build_store
from npeff.ops.pef.spec import complement_basis, finish_pefs, objective_rows
from tests import tolerances
from tests.fixtures import REVIEWS
from tests.ops.pef.references import TASKS, brute_force, fisher_norm, gram_distance, load, rows_of

PEF_RTOL = tolerances.FLOAT32_STORED_PEF["rtol"]


def test_gradient_pefs_are_the_predicted_class_gradient(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    store = build_store(model, REVIEWS, task, tmp_path / "s", tokenizer=tokenizer, projection="none",
                        pef=PefSpec(kind="gradient"))
    assert store.rank == 1 and store.manifest["kind"] == "gradient"
    names = store.manifest["parameter_layout"]["names"]
    for b, example in enumerate(REVIEWS):
        reference, _ = brute_force(model, tokenizer, task, example, names, kind="gradient")
        g = rows_of(store, b)[0]
        np.testing.assert_allclose(g.numpy(), (reference[0] / reference[0].norm()).numpy(),
                                   **tolerances.FLOAT32_STORED_ROWS)
        assert store.examples["pef_norm"][b].as_py() == pytest.approx(float(reference[0].norm() ** 2), rel=PEF_RTOL)


def test_eps_error_falls_as_rows_grow(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "next-token")
    task = TASKS["next-token"]
    exact = build_store(model, REVIEWS, task, tmp_path / "exact", tokenizer=tokenizer, projection="none")
    reference = [torch.from_numpy(g).double() for g in exact.read()]
    errors = {}
    for rows in (1, 8, 64):
        per_seed = []
        for seed in range(3):
            store = build_store(model, REVIEWS, task, tmp_path / f"eps{rows}-{seed}", tokenizer=tokenizer,
                                projection="none", pef=PefSpec(kind="eps", eps_rows=rows, seed=seed))
            assert store.rank == rows and store.manifest["pef_spec"]["pef"]["eps_rows"] == rows
            for g, ref in zip(store.read(), reference):
                per_seed.append(gram_distance(torch.from_numpy(g).double(), ref))
        errors[rows] = float(np.mean(per_seed))
    assert errors[64] < errors[8] < errors[1]
    assert errors[64] < 0.5 * errors[1]


def test_svd_reduction_keeps_the_top_k_part(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "suffixes")
    task = TASKS["suffixes"]  # three classes: rank 3
    full = build_store(model, REVIEWS, task, tmp_path / "full", tokenizer=tokenizer, projection="none")
    reduced = build_store(model, REVIEWS, task, tmp_path / "svd", tokenizer=tokenizer, projection="none",
                          pef=PefSpec(kind="exact", svd_rank=2))
    assert reduced.rank == 2
    for b in range(len(REVIEWS)):
        _, s, vh = torch.linalg.svd(rows_of(full, b), full_matrices=False)
        top2 = s[:2, None] * vh[:2]  # top2^T top2 is the top-2 part of G^T G
        assert gram_distance(rows_of(reduced, b), top2 / fisher_norm(top2) ** 0.5) < \
            tolerances.FLOAT32_VS_FLOAT64["rtol"]
        assert reduced.examples["pef_norm"][b].as_py() > 0


def test_finished_pefs_have_unit_fisher_norm_and_zero_stays_zero():
    g = torch.randn(3, 4, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g[1] = 0
    finished, norms = finish_pefs(g, PefSpec())
    np.testing.assert_allclose([fisher_norm(finished[0]), fisher_norm(finished[2])], 1.0,
                               **tolerances.FLOAT64_REGROUPED)
    np.testing.assert_allclose(norms[[0, 2]], [fisher_norm(g[0]), fisher_norm(g[2])], **tolerances.FLOAT64_REGROUPED)
    assert norms[1] == 0 and not finished[1].any()


@pytest.mark.parametrize("kwargs,message", [
    (dict(kind="exact", eps_rows=4), "eps_rows is given exactly"),
    (dict(kind="eps"), "eps_rows is given exactly"),
    (dict(kind="eps", eps_rows=0), "--eps needs a positive number of rows"),
    (dict(kind="gradient", svd_rank=1), "does not apply to --gradient"),
    (dict(kind="exact", svd_rank=0), "--svd-rank needs a positive integer"),
    (dict(kind="fisher"), "PEF kind must be one of"),
    (dict(exact_rows="all"), "exact_rows is one of"),
    (dict(kind="eps", eps_rows=2, exact_rows="classes"), "for exact PEFs only"),
])
def test_bad_pef_specs_are_refused(kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        PefSpec(**kwargs)


@pytest.mark.parametrize("p", [[0.5, 0.5], [0.9, 0.1], [1.0, 0.0], [0.0, 1.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0],
                               [1.0, 0.0, 0.0, 0.0]])
def test_complement_basis_is_orthonormal_and_orthogonal_to_root_p(p):
    s = torch.tensor([p], dtype=torch.float64).sqrt()
    u = complement_basis(s)[0]  # [C, C - 1]
    assert u.shape == (len(p), len(p) - 1)
    torch.testing.assert_close(u.T @ u, torch.eye(len(p) - 1, dtype=torch.float64), atol=1e-14, rtol=0)
    torch.testing.assert_close(s[0] @ u, torch.zeros(len(p) - 1, dtype=torch.float64), atol=1e-14, rtol=0)


def test_complement_rows_have_the_fisher_of_the_class_rows():
    """For a float64 softmax model, the C - 1 rows' G^T G equals the C rows' (the algebra of
    sum_c sqrt(p_c) a_c = 0), computed with autograd in float64."""
    torch.manual_seed(3)
    weight = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    x = torch.randn(6, dtype=torch.float64)

    def rows(exact_rows):
        log_probs = torch.log_softmax(weight @ x, 0)[None]
        objectives = objective_rows(log_probs, PefSpec(exact_rows=exact_rows), None)[0]
        return torch.stack([torch.autograd.grad(o, weight, retain_graph=True)[0].flatten() for o in objectives])

    classes, complement = rows("classes"), rows("complement")
    assert complement.shape == (3, 24) and classes.shape == (4, 24)
    torch.testing.assert_close(complement.T @ complement, classes.T @ classes, atol=1e-13, rtol=1e-12)
