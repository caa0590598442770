"""The report's figures, drawn by matplotlib and returned as inline SVG (the page loads nothing)."""

from __future__ import annotations

import io

import numpy as np

from npeff.ops.analysis import TUNING_TOP


def _svg(figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG sits inside HTML


def _figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.6, 3.2), dpi=100)
    return figure, figure.add_subplot()


def _plot(figure, axes, *, xlabel: str, ylabel: str, title: str, caption: str, marker: tuple | None = None) -> dict:
    """Label, optionally mark a vertical line ``(x, legend)``, and render one figure."""
    if marker is not None:
        axes.axvline(marker[0], color="#c0392b", linestyle="--", linewidth=1, label=marker[1])
        axes.legend(frameon=False)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return {"svg": _svg(figure), "caption": caption}


def plots(W: np.ndarray, losses: np.ndarray, warmup_steps: int | None) -> list[dict]:
    """The report's figures as inline SVG: loss curve, coefficient and component-size distributions.

    Args:
        W: coefficients ``[m, C]``.
        losses: the loss at every step ``[steps]`` (may be empty).
        warmup_steps: marked on the loss curve when it falls inside it.

    Returns:
        Three ``{"svg": ..., "caption": ...}``. Memory: the positive entries of ``W`` once more.
    """
    figure, axes = _figure()
    if len(losses):
        axes.plot(np.arange(1, len(losses) + 1), losses, color="#1f3a5f", linewidth=1.4)
        if np.all(np.asarray(losses) > 0):
            axes.set_yscale("log")
    marked = warmup_steps and 0 < warmup_steps < len(losses)
    loss = _plot(figure, axes, xlabel="step", ylabel="loss", title="Loss per step",
                 caption="NPEFF loss at every step (warm-up steps update H only).",
                 marker=(warmup_steps + 0.5, "end of warm-up") if marked else None)

    figure, axes = _figure()
    positive = W[W > 0]
    if positive.size:
        axes.hist(np.log10(positive), bins=60, color="#2e7d5b")
    zero_fraction = 1.0 - positive.size / max(W.size, 1)
    coefficients = _plot(figure, axes, xlabel="log10(coefficient)", ylabel="count", title="Non-zero coefficients",
                         caption=f"Distribution of the non-zero entries of W; {zero_fraction:.1%} of entries are zero.")

    figure, axes = _figure()
    sizes = (W > 0).sum(axis=0)
    axes.hist(sizes, bins=min(40, max(len(sizes), 1)), color="#8e5ea2")
    size_plot = _plot(figure, axes, xlabel="examples with non-zero coefficient", ylabel="components",
                      title="Component sizes", caption="How many examples each component is active on.",
                      marker=(TUNING_TOP, f"{TUNING_TOP} (tuning threshold)"))
    return [loss, coefficients, size_plot]


__all__ = ["plots"]
