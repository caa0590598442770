"""The alignment of components with planted strategies, on hand-made coefficients."""

import numpy as np

from npeff.ops.demo.alignment import alignment


def test_alignment_measure():
    strategies = ["a"] * 40 + ["b"] * 40
    W = np.zeros((80, 3))
    W[:40, 0] = np.linspace(1, 0.1, 40)  # pure a
    W[32:48, 1] = np.linspace(1, 0.1, 16)  # half a, half b
    W[60:, 1] = 0.01
    W[:10, 2] = 1.0  # too small to analyse
    result = alignment(W, strategies)
    assert result["n_analysed"] == 2
    assert [c["purity"] for c in result["components"]] == [1.0, 0.5]
    assert result["aligned_fraction"] == 0.5 and result["strategies_found"] == ["a"]
    assert 0.5 <= result["chance_mean_purity"] < 0.8 and result["chance_aligned_fraction"] < 0.2


def test_alignment_with_nothing_to_analyse():
    result = alignment(np.eye(20), ["a", "b"] * 10)
    assert result["n_analysed"] == 0 and result["aligned_fraction"] == 0.0 and result["mean_purity"] == 0.0
    assert result["strategies_found"] == []
