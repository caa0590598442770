"""``npeff report``: one self-contained HTML page about a decomposition.

The page needs no network: plots are SVG drawn by matplotlib and embedded inline, the few lines of
script (search and sort) are inline too. Example text is escaped by the template engine.
"""

from __future__ import annotations

import io
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from npeff.errors import InvalidArgumentError, StoreExistsError
from npeff.ops import analysis
from npeff.store import _files

TEMPLATE = "report.html.j2"


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
    """The report's figures as inline SVG: loss curve, coefficient and component-size distributions."""
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
                      marker=(analysis.TUNING_TOP, f"{analysis.TUNING_TOP} (tuning threshold)"))
    return [loss, coefficients, size_plot]


def _name(value: Any, names: Sequence[str] | None) -> str:
    """A class as ``name (index)`` in the report, empty when missing."""
    if value is None:
        return ""
    name = analysis.label_name(value, names)
    return name if name == str(value) else f"{name} ({value})"


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items() if item is not None)
    return str(value)


def _settings(store, decomposition) -> tuple[list, list]:
    config = store.config
    spec = config.pef_spec or {}
    store_rows = [
        ("path", str(store.path)), ("examples", f"{store.num_examples:,}"),
        ("kind", config.kind), ("rank r", config.rank), ("dim d", config.dim), ("dtype", config.dtype),
        ("projection", _text(config.projection) if config.projection else "none"),
        ("model", config.model.name if config.model is not None else "unknown"),
        ("formulation", spec.get("formulation", "unknown")),
        ("PEF", _text(spec.get("pef", "unknown"))),
        ("parameters", f"{config.parameter_layout.n_total:,} in {len(config.parameter_layout.names)} tensors"
         if config.parameter_layout is not None else "unknown"),
        ("fingerprint", store.fingerprint),
    ]
    manifest = decomposition.manifest
    decomposition_rows = [("path", str(decomposition.path))]
    decomposition_rows += [(key.replace("_", " "), value) for key, value in (manifest.get("config") or {}).items()]
    for key in ("final_loss", "median_step_seconds", "device", "memory_budget", "cluster"):
        if manifest.get(key) is not None:
            decomposition_rows.append((key.replace("_", " "), manifest[key]))
    provenance = manifest.get("provenance") or {}
    if provenance.get("command"):
        decomposition_rows.append(("command", provenance["command"]))
    return store_rows, decomposition_rows


def build_report(decomposition, store=None, *, k: int = 16) -> str:
    """The report page as a string."""
    import jinja2

    from npeff import __version__

    store = analysis.open_store_for(decomposition, store)
    W = decomposition.W
    k = min(k, W.shape[0])
    columns = analysis.example_columns(store)
    names = analysis.label_names(store)
    tops = analysis.top_indices(W, min(max(k, analysis.TUNING_TOP), W.shape[0]))  # each column sorted once
    tunings = analysis.compute_tunings(W, columns["label"], columns["prediction"], tops=tops)
    mass = W.sum(axis=0)
    components = []
    for tuning in tunings.components:
        c = tuning.component
        components.append({
            "index": c, "n_nonzero": tuning.n_nonzero, "mass": float(mass[c]), "included": tuning.included,
            "prediction_tuned": tuning.prediction_tuned, "label_tuned": tuning.label_tuned, "lnp": tuning.lnp,
            "prediction_text": _name(tuning.prediction, names), "label_text": _name(tuning.label, names),
            "tuned_rank": 3 * tuning.lnp + 2 * tuning.label_tuned + tuning.prediction_tuned,
            "examples": [{
                "rank": rank + 1, "coefficient": float(W[i, c]), "source_id": columns["source_id"][i] or "",
                "label_text": _name(columns["label"][i], names),
                "prediction_text": _name(columns["prediction"][i], names), "text": columns["text"][i] or "",
            } for rank, i in enumerate(tops[c][:k])],
        })
    config = decomposition.manifest.get("config") or {}
    store_rows, decomposition_rows = _settings(store, decomposition)
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.get_template(TEMPLATE).render(
        title=decomposition.path.name, m=W.shape[0], n_components=W.shape[1], version=__version__,
        written=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        store_settings=store_rows, decomposition_settings=decomposition_rows,
        plots=plots(W, decomposition.losses, config.get("warmup_steps")),
        tuning_summary=tunings.summary(), components=components,
        fmt_pct=lambda value: "n/a" if value is None else f"{value:.1f}%",
    )


def write_report(decomposition, store=None, *, out: str | os.PathLike, k: int = 16,
                 overwrite: bool = False) -> Path:
    """Write the report to ``out`` (an ``.html`` file) atomically; returns its path."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InvalidArgumentError(f"the report is an HTML file: --out must end in .html, got {out}")
    if out.is_dir():
        raise StoreExistsError(f"{out} is a directory; give a file name ending in .html")
    if out.exists() and not overwrite:
        raise StoreExistsError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise InvalidArgumentError(f"the folder {out.parent} does not exist")
    page = build_report(decomposition, store, k=k)
    _files.atomic_write_bytes(out, page.encode("utf-8"))
    return out


__all__ = ["build_report", "plots", "write_report"]
