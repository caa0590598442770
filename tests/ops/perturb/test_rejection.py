"""Orthogonal rejection (paper, section 3.2) against a naive loop, thresholds and zero vectors."""

import numpy as np
import pytest
import torch

from npeff.errors import InvalidArgumentError
from npeff.ops.perturb import reject
from tests import tolerances


def naive_reject(h, others, threshold):
    """Section 3.2 written out with Python floats, one component at a time."""
    h = [float(x) for x in h]
    for row in others:
        row = [float(x) for x in row]
        norm_row = sum(x * x for x in row) ** 0.5
        norm_h = sum(x * x for x in h) ** 0.5
        if norm_row == 0 or norm_h == 0:
            continue
        unit = [x / norm_row for x in row]
        dot = sum(a * b for a, b in zip(h, unit))
        if abs(dot) / norm_h < threshold:
            h = [a - dot * b for a, b in zip(h, unit)]
    return np.array(h)


@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    h = rng.standard_normal(40)
    others = rng.standard_normal((7, 40))
    others[2] = h + 0.1 * rng.standard_normal(40)  # |cos| near 1: kept
    others[4] = 0.0  # a dead component: skipped
    return h, others


def test_reject_against_naive_loop(vectors):
    h, others = vectors
    expected = naive_reject(h, others, 0.5)
    np.testing.assert_allclose(reject(h, others), expected, **tolerances.FLOAT64_REGROUPED)
    unit = others[[0, 1, 3, 5, 6]] / np.linalg.norm(others[[0, 1, 3, 5, 6]], axis=1, keepdims=True)
    # the last rejected direction is exactly removed; the similar one is not
    assert abs(reject(h, others) @ unit[-1]) < 1e-12
    assert abs(reject(h, others) @ others[2]) > 1.0


def test_torch_in_torch_out_and_exclude(vectors):
    h, others = vectors
    stacked = np.vstack([others[:3], h[None], others[3:]])
    result = reject(torch.from_numpy(h).float(), torch.from_numpy(stacked), exclude=3)
    assert isinstance(result, torch.Tensor) and result.dtype == torch.float32
    np.testing.assert_allclose(result.numpy(), naive_reject(h, others, 0.5),
                               **tolerances.FLOAT32_VS_FLOAT64)


def test_threshold_behaviour():
    h = np.array([1.0, 0.0])
    similar = np.array([[1.0, 1.0]])  # |cos| = 0.707 >= 0.5: not rejected
    np.testing.assert_array_equal(reject(h, similar), h)
    np.testing.assert_allclose(reject(h, similar, threshold=0.8), [0.5, -0.5],
                               **tolerances.FLOAT64_REGROUPED)
    # each test uses the current h (already rejected from the earlier rows)
    others = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    h = np.array([1.0, 0.2, 0.9])
    np.testing.assert_allclose(reject(h, others), naive_reject(h, others, 0.5),
                               **tolerances.FLOAT64_REGROUPED)
    np.testing.assert_array_equal(reject(h, others, threshold=0.0), h)


def test_zero_vectors():
    others = np.array([[0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(reject(np.array([1.0, 0.1]), others), [1.0, 0.0])
    np.testing.assert_array_equal(reject(np.zeros(2), others), np.zeros(2))
    np.testing.assert_array_equal(reject(np.array([1.0, 2.0]), np.zeros((0, 2))), [1.0, 2.0])


@pytest.mark.parametrize("h, others, options, match", [
    (np.ones(3), np.ones((2, 4)), {}, "columns"),
    (np.ones((3, 1)), np.ones((2, 3)), {}, r"\[d\]"),
    (np.array([1.0, np.nan, 0.0]), np.ones((2, 3)), {}, "NaN"),
    (np.ones(3), np.array([[1.0, np.inf, 0.0]]), {}, "NaN"),
    (np.ones(3), np.ones((2, 3)), {"threshold": -0.1}, "threshold"),
    (np.ones(3), np.ones((2, 3)), {"threshold": float("nan")}, "threshold"),
    (np.ones(3), np.ones((2, 3)), {"exclude": 2}, "exclude"),
    ([1.0, 2.0], np.ones((2, 2)), {}, "numpy array or a torch tensor"),
])
def test_bad_inputs(h, others, options, match):
    with pytest.raises(InvalidArgumentError, match=match):
        reject(h, others, **options)
