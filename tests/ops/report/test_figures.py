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
