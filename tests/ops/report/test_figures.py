"""The report's figures: three inline SVGs, the warm-up marked only where it falls, the zero fraction."""

import numpy as np
import pytest

from npeff.ops.report.figures import plots


@pytest.fixture
def W():
    W = np.zeros((10, 3))
    W[:5, 0] = 1.0
    W[:2, 1] = 0.5  # 7 of 30 entries are non-zero; component 2 is dead
    return W


def test_three_inline_svgs_with_captions(W):
    figures = plots(W, np.linspace(2.0, 1.0, 10), 3)
    assert len(figures) == 3
    assert all(f["svg"].startswith("<svg") and f["svg"].rstrip().endswith("</svg>") for f in figures)
    assert "76.7% of entries are zero" in figures[1]["caption"]
    assert "16 (tuning threshold)" in figures[2]["svg"]


@pytest.mark.parametrize("losses, warmup_steps, marked", [
    (np.linspace(2.0, 1.0, 10), 3, True),
    (np.linspace(2.0, 1.0, 10), 0, False),
    (np.linspace(2.0, 1.0, 10), None, False),
    (np.linspace(2.0, 1.0, 10), 10, False),  # no joint step: nothing ends inside the curve
    (np.array([]), 3, False),
    (np.array([1.0, 0.0, -1.0]), 1, True),  # a loss that is not positive: linear axis
])
def test_warmup_marker(W, losses, warmup_steps, marked):
    assert ("end of warm-up" in plots(W, losses, warmup_steps)[0]["svg"]) == marked


def test_all_zero_coefficients(W):
    figures = plots(np.zeros_like(W), np.array([1.0]), None)
    assert "100.0% of entries are zero" in figures[1]["caption"]


def test_coefficient_caption_counts_the_effective_support():
    W = np.zeros((10, 2))
    W[:4, 0] = [1.0, 0.5, 1e-9, 1e-12]  # two below 1e-6 of the column's largest
    W[:2, 1] = [2.0, 1e-7]  # 1e-7 is below 1e-6 x 2
    figures = plots(W, np.array([1.0]), None)
    assert "70.0% of entries are zero, 15.0% non-zero but below 1e-06 of their component's largest, " \
           "15.0% in the effective support" in figures[1]["caption"]
    assert "effective support" in figures[2]["svg"] and "non-zero coefficient" in figures[2]["svg"]
    assert "20.0% non-zero but below 0.5" in plots(W, np.array([1.0]), None, support_threshold=0.5)[1]["caption"]


def test_spectrum_figure():
    from npeff.ops.analysis.spectrum import Spectrum

    spectrum = Spectrum(store="s", normalize="max", rank=3, n_examples=10, n_used=9, n_not_ok=1, n_zero=0,
                        mean=(1.0, 0.1, 0.0), std=(0.0, 0.01, 0.0), cumulative_share=(0.9, 1.0, 1.0))
    figures = plots(np.ones((4, 2)), np.array([1.0]), None, spectrum=spectrum)
    assert len(figures) == 4 and figures[3]["svg"].startswith("<svg")
    assert "Mean over 9 examples" in figures[3]["caption"] and "divided by the largest" in figures[3]["caption"]
    assert "90.0% of the trace" in figures[3]["caption"]
