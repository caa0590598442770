"""The coefficient matrix as the analyses take it: what is refused, and the non-zero counts."""

import numpy as np
import pytest

from npeff.errors import InvalidArgumentError
from npeff.ops.analysis.coefficients import as_coefficient_matrix, component_list, nonzero_counts


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
