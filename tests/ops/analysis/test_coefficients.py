"""The coefficient matrix as the analyses take it: what is refused, the non-zero counts and the
effective support (against a naive count)."""

import numpy as np
import pytest

from npeff.errors import InvalidArgumentError
from npeff.ops.analysis.coefficients import (DEFAULT_SUPPORT_THRESHOLD, as_coefficient_matrix,
                                             check_support_threshold, component_list, nonzero_counts, support_counts,
                                             support_mask)


def test_nonzero_counts_count_positive_coefficients():
    W = np.array([[0.5, 0.0, 0.0], [0.9, 0.0, 0.0], [0.5, 2.0, 0.0], [0.0, 0.0, 0.0]])
    assert nonzero_counts(W).tolist() == [3, 1, 0]


@pytest.mark.parametrize("W, message", [
    (np.ones(5), "must be a matrix"),
    (np.ones((2, 3, 4)), "must be a matrix"),
    (np.ones((5, 0)), "no components"),
    (np.array([[1.0, np.nan]]), "finite numbers"),
    (np.array([[1.0, np.inf]]), "finite numbers"),
    (np.array([["a", "b"]]), "finite numbers"),
], ids=["vector", "3d", "no-components", "nan", "inf", "strings"])
def test_bad_coefficient_matrices(W, message):
    with pytest.raises(InvalidArgumentError, match=message):
        as_coefficient_matrix(W)


def test_component_list_defaults_to_all_and_keeps_the_order_asked():
    assert component_list(None, 3) == [0, 1, 2]
    assert component_list([], 3) == [0, 1, 2]
    assert component_list([2, np.int64(0)], 3) == [2, 0]


@pytest.mark.parametrize("component", [3, -1, 1.0, "1"])
def test_component_list_refuses(component):
    with pytest.raises(InvalidArgumentError, match="out of range"):
        component_list([component], 3)


def naive_support_counts(W, threshold):
    """The effective support written out: entry by entry, above threshold x its column's largest."""
    counts = []
    for c in range(W.shape[1]):
        largest = max(float(W[i, c]) for i in range(W.shape[0]))
        counts.append(sum(1 for i in range(W.shape[0]) if W[i, c] > 0 and W[i, c] > threshold * largest))
    return counts


@pytest.mark.parametrize("threshold", [0.0, 1e-6, 1e-3, 0.5])
def test_support_counts_against_naive(threshold):
    rng = np.random.default_rng(0)
    W = rng.random((200, 7)) * (rng.random((200, 7)) > 0.3)
    W *= 10.0 ** rng.uniform(-14, 0, W.shape)  # coefficients spread over many orders of magnitude
    W[:, 5] = 0.0  # a dead component
    W[:3, 6] = 1e-12  # a component of only tiny values: its own largest is the scale
    assert support_counts(W, threshold).tolist() == naive_support_counts(W, threshold)
    assert support_mask(W, threshold).sum(axis=0).tolist() == naive_support_counts(W, threshold)


def test_tiny_coefficients_are_outside_the_effective_support():
    W = np.array([[1.0, 0.0], [1e-12, 2e-7], [0.3, 1.0], [2e-6, 0.0]])
    assert nonzero_counts(W).tolist() == [4, 2]
    assert support_counts(W).tolist() == [3, 1]  # the default: 1e-6 of the column's largest
    assert support_counts(W, 0.0).tolist() == [4, 2]
    assert support_counts(W, 0.5).tolist() == [1, 1]
    assert DEFAULT_SUPPORT_THRESHOLD == 1e-6


@pytest.mark.parametrize("threshold", [-1e-6, 1.0, 2.0, float("nan"), float("inf"), True, "1e-6", None])
def test_bad_support_thresholds(threshold):
    with pytest.raises(InvalidArgumentError, match=r"support threshold .* in \[0, 1\)"):
        check_support_threshold(threshold)
    with pytest.raises(InvalidArgumentError, match="support threshold"):
        support_counts(np.ones((3, 2)), threshold)
