"""The report's figures, drawn by matplotlib and returned as inline SVG (the page loads nothing)."""

from __future__ import annotations

import io

import numpy as np

from npeff.ops.analysis import DEFAULT_SUPPORT_THRESHOLD, TUNING_TOP
from npeff.ops.analysis.coefficients import support_floors

#: what each normalisation of the spectrum divides by, for its caption
_DIVIDED_BY = {"max": "the largest", "sum": "their sum", "frobenius": "their root sum of squares"}


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG sits inside HTML


def _figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.6, 3.2), dpi=100)
    return figure, figure.add_subplot()


def _plot(figure, axes, *, xlabel: str, ylabel: str, title: str, caption: str, marker: tuple | None = None,
          legend: bool = False) -> dict:
    """Label, optionally mark a vertical line ``(x, legend)``, and render one figure."""
    if marker is not None:
        axes.axvline(marker[0], color="#c0392b", linestyle="--", linewidth=1, label=marker[1])
    if marker is not None or legend:
        axes.legend(frameon=False)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return {"svg": _svg(figure), "caption": caption}


def loss_plot(losses: np.ndarray, warmup_steps: int | None, caption: str | None = None) -> dict:
    """The loss at every step ``[steps]`` (may be empty), the end of the warm-up marked inside it."""
    figure, axes = _figure()
    if len(losses):
        axes.plot(np.arange(1, len(losses) + 1), losses, color="#1f3a5f", linewidth=1.4)
        if np.all(np.asarray(losses) > 0):
            axes.set_yscale("log")
    marked = warmup_steps and 0 < warmup_steps < len(losses)
    return _plot(figure, axes, xlabel="step", ylabel="loss", title="Loss per step",
                 caption=caption or "NPEFF loss at every step (warm-up steps update H only).",
                 marker=(warmup_steps + 0.5, "end of warm-up") if marked else None)


def coefficient_plot(W: np.ndarray, support_threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> dict:
    """The distribution of the positive entries of ``W`` ``[m, C]``, those in the effective support
    apart from those below it (under ``support_threshold`` times their component's largest)."""
    figure, axes = _figure()
    positive_mask = W > 0
    supported_mask = W > support_floors(W, support_threshold)[None, :]
    supported, below = W[supported_mask], W[positive_mask & ~supported_mask]
    if supported.size or below.size:
        axes.hist([np.log10(supported), np.log10(below)], bins=60, stacked=True, color=["#2e7d5b", "#b8c4bd"],
                  label=["effective support", f"below {support_threshold:g} x the component's largest"])
    total = max(W.size, 1)
    zero_fraction = 1.0 - (supported.size + below.size) / total
    return _plot(figure, axes, xlabel="log10(coefficient)", ylabel="count", title="Non-zero coefficients",
                 legend=bool(supported.size or below.size),
                 caption=f"Distribution of the non-zero entries of W; {zero_fraction:.1%} of entries are zero, "
                         f"{below.size / total:.1%} non-zero but below {support_threshold:g} of their "
                         f"component's largest, {supported.size / total:.1%} in the effective support.")


def size_plot(W: np.ndarray, support_threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> dict:
    """Per component, how many examples have a non-zero coefficient and how many are in its
    effective support: two histograms over the ``C`` components."""
    figure, axes = _figure()
    raw = (W > 0).sum(axis=0)
    effective = (W > support_floors(W, support_threshold)[None, :]).sum(axis=0)
    bins = np.histogram_bin_edges(np.concatenate([raw, effective]), bins=min(40, max(W.shape[1], 1)))
    axes.hist(raw, bins=bins, color="#c9b6d6", label="non-zero coefficient")
    axes.hist(effective, bins=bins, histtype="step", linewidth=1.6, color="#5b2c83", label="effective support")
    return _plot(figure, axes, xlabel="examples", ylabel="components", title="Component sizes",
                 caption=f"How many examples each component is active on: with a non-zero coefficient, and in "
                         f"its effective support (above {support_threshold:g} of its largest); the tunings "
                         "count the latter.",
                 marker=(TUNING_TOP, f"{TUNING_TOP} (tuning threshold)"))


def spectrum_plot(spectrum) -> dict:
    """The mean normalised eigenvalue decay of the store's PEFs (a
    :class:`~npeff.ops.analysis.spectrum.Spectrum`), on a log scale as in the paper's Figure 3."""
    figure, axes = _figure()
    mean = np.asarray(spectrum.mean)
    j = np.arange(1, len(mean) + 1)
    shown = mean > 0
    axes.plot(j[shown], mean[shown], color="#1f3a5f", marker="o", markersize=3, linewidth=1.4)
    if shown.any():
        axes.set_yscale("log")
    axes.set_xticks(j if len(j) <= 16 else np.linspace(1, len(j), 9).round().astype(int))
    return _plot(figure, axes, xlabel="eigenvalue j (largest first)", ylabel="mean normalised eigenvalue",
                 title="PEF eigenvalue decay",
                 caption=f"Mean over {spectrum.n_used:,} examples of the eigenvalues of G G^T (those of the PEF), "
                         f"each example's divided by {_DIVIDED_BY[spectrum.normalize]} (paper, Figure 3). The "
                         f"top eigenvalue holds {spectrum.cumulative_share[0]:.1%} of the trace on average.")


def plots(W: np.ndarray, losses: np.ndarray, warmup_steps: int | None, *,
          support_threshold: float = DEFAULT_SUPPORT_THRESHOLD, spectrum=None, loss_caption: str | None = None,
          ) -> list[dict]:
    """The report's figures as inline SVG: loss curve, coefficient and component-size distributions,
    and with ``spectrum`` the PEFs' eigenvalue decay.

    Args:
        W: coefficients ``[m, C]``.
        losses: the loss at every step ``[steps]`` (may be empty).
        warmup_steps: marked on the loss curve when it falls inside it.
        support_threshold: the effective support's threshold (see
            :mod:`npeff.ops.analysis.coefficients`).
        spectrum: a :class:`~npeff.ops.analysis.spectrum.Spectrum`, or None.
        loss_caption: the loss curve's caption instead of the default.

    Returns:
        Three or four ``{"svg": ..., "caption": ...}``. Memory: the positive entries of ``W`` and
        two ``[m, C]`` masks.
    """
    figures = [loss_plot(losses, warmup_steps, loss_caption), coefficient_plot(W, support_threshold),
               size_plot(W, support_threshold)]
    if spectrum is not None:
        figures.append(spectrum_plot(spectrum))
    return figures


__all__ = ["coefficient_plot", "loss_plot", "plots", "size_plot", "spectrum_plot"]
