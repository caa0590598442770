"""FPC reconstruction against a naive dense ISTA, the identity, a planted sparse vector, bad inputs."""

import math

import numpy as np
import pytest
import torch

from npeff.cuda_ops import ProjectionSpec, project, reference_matrix
from npeff.errors import InvalidArgumentError
from npeff.ops.perturb import FpcResult, ProjectionOperator, fpc, reconstruct
from npeff.ops.perturb.compressed_sensing import equation73_tau
from npeff.ops.perturb.spectrum import largest_eigenvalue
from tests import tolerances


def naive_ista(A, h, mu, tol=1e-14, max_steps=200_000):
    """Proximal gradient on min ||u||_1 + (1/(2 mu)) ||A u - h||^2 with the dense float64 A."""
    step = 1.0 / np.linalg.eigvalsh(A @ A.T)[-1]
    u = np.zeros(A.shape[1])
    for _ in range(max_steps):
        v = u - step * (A.T @ (A @ u - h))
        u_next = np.sign(v) * np.maximum(np.abs(v) - step * mu, 0.0)
        if np.linalg.norm(u_next - u) <= tol * np.linalg.norm(u):
            return u_next
        u = u_next
    raise AssertionError("the naive ISTA did not converge")


def sparse_problem(A, seed, k=10, noise=0.01):
    rng = np.random.default_rng(seed)
    u = np.zeros(A.shape[1])
    u[rng.choice(A.shape[1], k, replace=False)] = rng.standard_normal(k)
    return A @ u + noise * rng.standard_normal(A.shape[0])


def test_dense_gaussian_against_naive():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((256, 2048)) / 16
    h = sparse_problem(A, 2)
    At = torch.from_numpy(A)
    result = fpc(lambda u: At @ u, lambda y: At.T @ y, torch.from_numpy(h), n=2048, mu=1e-2,
                 xtol=1e-12, max_iterations=50_000)
    assert isinstance(result, FpcResult) and result.converged
    expected = naive_ista(A, h, 1e-2)
    np.testing.assert_allclose(result.u.numpy(), expected, **tolerances.FPC_VS_NAIVE)
    assert result.sigma2 >= np.linalg.eigvalsh(A @ A.T)[-1]


def test_npeff_projection_against_naive():
    spec = ProjectionSpec(seed=5, d=256)
    A = reference_matrix(spec, 4096)
    h = sparse_problem(A, 3)
    result = reconstruct(h, projection=spec.to_dict(), n=4096, mu=1e-2, convention="npeff", xtol=1.5e-8,
                         max_iterations=20_000)
    assert result.converged
    expected = naive_ista(A, h, 1e-2)
    np.testing.assert_allclose(result.u.numpy(), expected, **tolerances.FPC_FLOAT32_OPERATOR)
    assert result.sigma2 >= np.linalg.eigvalsh(A @ A.T)[-1]
    assert result.settings["tau"] == equation73_tau(256, 4096) == 1.999
    assert result.settings["projection"] == spec.to_dict()


def test_lanczos_estimate_is_close_from_below():
    A = reference_matrix(ProjectionSpec(seed=9, d=256), 2048)
    exact = np.linalg.eigvalsh(A @ A.T)[-1]
    At = torch.from_numpy(A)
    estimate = largest_eigenvalue(lambda u: At @ u, lambda y: At.T @ y, 2048, seed=4)
    assert exact * 0.99 <= estimate <= exact * (1 + 1e-9)
    # far from 1: the d non-zero eigenvalues of A^T A average n/d
    assert 8 < exact < (math.sqrt(2048 / 256) + 1) ** 2 * 1.05


def test_identity_is_the_soft_threshold():
    h = np.random.default_rng(4).standard_normal(500)
    for mu in (0.3, 1e-9):
        result = reconstruct(h, projection={"kind": "none"}, n=500, mu=mu, convention="npeff")
        expected = np.sign(h) * np.maximum(np.abs(h) - mu, 0.0)
        assert result.converged and result.sigma2 == 1.0
        np.testing.assert_allclose(result.u.numpy(), expected, **tolerances.FLOAT64_REGROUPED)
    # the exact minimiser: the subgradient condition (h - u)/mu in d||u||_1 holds coordinatewise
    result = reconstruct(h, projection={"kind": "none"}, n=500, mu=0.3, convention="npeff")
    u = result.u.numpy()
    residual = (h - u) / 0.3
    assert np.all(np.abs(residual) <= 1 + 1e-12)
    np.testing.assert_allclose(residual[u != 0], np.sign(u[u != 0]), **tolerances.FLOAT64_REGROUPED)
    result = reconstruct(h, projection={"kind": "none"}, n=500, mu=1e-9, convention="npeff")
    np.testing.assert_allclose(result.u.numpy(), h, rtol=0, atol=2e-9)  # small mu: h, within mu


def test_zero_solution_when_mu_is_large():
    h = np.random.default_rng(5).standard_normal(64)
    result = reconstruct(h, projection={"kind": "none"}, n=64, mu=10.0, convention="npeff")
    assert result.iterations == 0 and result.converged and not result.u.any()


def test_planted_sparse_vector_is_recovered():
    n, d, k = 32_768, 2048, 30
    rng = np.random.default_rng(6)
    u_true = np.zeros(n)
    support = rng.choice(n, k, replace=False)
    u_true[support] = rng.choice([-1.0, 1.0], k) * (0.5 + rng.random(k))
    h = project(u_true.astype(np.float32), d=d, seed=7, n_total=n, backend="cpu")
    # paper settings (beta=4, gamma=0.99, eq. 73, one inner iteration) with mu at ~1% of the entries
    result = reconstruct(h, projection={"kind": "ssp-v1", "seed": 7, "d": d}, n=n, mu=1e-2, convention="npeff",
                         xtol=1e-6, max_iterations=5000)
    u = result.u.numpy()
    found = np.argsort(-np.abs(u))[:k]
    assert result.converged
    assert len(set(found) & set(support)) / k >= 0.9  # support recall
    assert np.linalg.norm(u - u_true) / np.linalg.norm(u_true) <= 0.05  # bias ~ mu / |u| ~ 1%


def test_seeded_and_paper_convention_against_naive():
    """The paper's problem: a unit-norm component, the +-1 matrix sqrt(32) A, mu as the paper sets it."""
    spec = ProjectionSpec(seed=2, d=256)
    A = reference_matrix(spec, 2048)
    h = sparse_problem(A, 8)
    unit = h / np.linalg.norm(h)
    first = reconstruct(unit, projection=spec.to_dict(), n=2048, mu=3e-2, seed=3, xtol=1.5e-8,
                        max_iterations=50_000)
    again = reconstruct(torch.from_numpy(unit), projection=spec.to_dict(), n=2048, mu=3e-2, seed=3,
                        xtol=1.5e-8, max_iterations=50_000)
    assert first.settings["convention"] == "paper" and first.converged
    assert torch.equal(first.u, again.u) and first.sigma2 == again.sigma2
    c = math.sqrt(32)
    assert first.settings["mu_effective"] == pytest.approx(3e-2 / c)
    # npeff's u is sqrt(32) times the paper's: the same direction and support
    expected = naive_ista(c * A, unit, 3e-2)
    assert np.count_nonzero(expected) > 0
    np.testing.assert_allclose(first.u.numpy(), c * expected, **tolerances.FPC_FLOAT32_OPERATOR)
    # scale-invariant: a component of norm 5 (and its reference norm) gives 5 u
    scaled = reconstruct(5 * unit, projection=spec.to_dict(), n=2048, mu=3e-2, seed=3, xtol=1.5e-8,
                         max_iterations=50_000)
    np.testing.assert_allclose(scaled.u.numpy(), 5 * first.u.numpy(), **tolerances.FPC_FLOAT32_OPERATOR)
    # a rejected vector keeps its component's reference norm: mu_eff does not shrink with it
    rejected = reconstruct(0.5 * unit, projection=spec.to_dict(), n=2048, mu=3e-2, reference_norm=1.0,
                           seed=3)
    assert rejected.settings["mu_effective"] == pytest.approx(3e-2 / c)


def test_max_iterations_reports_not_converged():
    h = np.random.default_rng(0).standard_normal(256)
    result = reconstruct(h, projection={"kind": "ssp-v1", "seed": 1, "d": 256}, n=4096,
                         mu=1e-4, max_iterations=3)
    assert result.iterations == 3 and not result.converged


def test_operator_is_adjoint():
    operator = ProjectionOperator({"kind": "ssp-v1", "seed": 4, "d": 64}, 1000)
    rng = np.random.default_rng(1)
    u, y = torch.from_numpy(rng.standard_normal(1000)), torch.from_numpy(rng.standard_normal(64))
    assert operator.paper_scale == pytest.approx(math.sqrt(32))
    np.testing.assert_allclose(float(operator.apply(u) @ y), float(u @ operator.adjoint(y)),
                               **tolerances.FLOAT32_VS_FLOAT64)


SSP = {"kind": "ssp-v1", "seed": 0, "d": 64}


@pytest.mark.parametrize("h, options, match", [
    (np.ones(64), {"projection": {"kind": "external"}}, "cannot be inverted"),
    (np.ones(63), {"projection": SSP}, "length 63"),
    (np.ones(10), {"projection": {"kind": "none"}}, "d = n"),
    (np.ones(64), {"projection": SSP, "mu": 0.0}, "mu"),
    (np.ones(64), {"projection": SSP, "mu": -1e-3}, "mu"),
    (np.ones(64), {"projection": SSP, "mu": float("nan")}, "mu"),
    (np.array([1.0, np.nan] * 32), {"projection": SSP}, "NaN"),
    (np.ones((2, 32)), {"projection": SSP}, r"\[d\]"),
    (np.ones(64, dtype=np.int64), {"projection": SSP}, "floating"),
    (np.ones(64), {"projection": SSP, "convention": "matlab"}, "convention"),
    (np.ones(64), {"projection": SSP, "reference_norm": 0.0}, "reference_norm"),
    (np.ones(64), {"projection": SSP, "convention": "npeff", "reference_norm": 1.0}, "reference_norm"),
    (np.ones(64), {"projection": SSP, "mu_scale": 2.0}, "mu_scale"),
    (np.ones(64), {"projection": SSP, "beta": 1.0}, "beta"),
    (np.ones(64), {"projection": SSP, "gamma": 1.5}, "gamma"),
    (np.ones(64), {"projection": SSP, "tau": 2.0}, "tau"),
    (np.ones(64), {"projection": SSP, "inner_iterations": 0}, "inner_iterations"),
    (np.ones(64), {"projection": SSP, "device": "tpu"}, "device"),
    (np.ones(64), {"projection": {"kind": "ssp-v1", "seed": 0, "d": 64, "dim": 3}}, "unknown"),
])
def test_bad_inputs(h, options, match):
    options = {"n": 100, **options}
    with pytest.raises(InvalidArgumentError, match=match):
        reconstruct(h, **options)
