"""The report page: the settings tables, the components with their tunings and top examples,
rendered with the template in ``templates/`` and written atomically.

The page is about a decomposition or about coefficients fitted to held-out data by ``npeff fit``
(their W, with the components, loss curve and settings of the decomposition they were fitted
with). Components are counted by their effective support (see
:mod:`npeff.ops.analysis.coefficients`); the page shows the raw non-zero counts beside it.

The page needs no network: the plots are inline SVG (:mod:`npeff.ops.report.figures`), the few lines
of script (search and sort) are inline too. Example text is escaped by the template engine.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from npeff.errors import InvalidArgumentError, StoreExistsError
from npeff.ops import analysis
from npeff.ops.report.figures import plots
from npeff.store import _files

TEMPLATE = "report.html.j2"
TEMPLATES = Path(__file__).parent / "templates"


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


def settings_rows(store, decomposition) -> tuple[list, list]:
    """The rows ``(name, value)`` of the store's and of the decomposition's settings tables."""
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
    fit = manifest.get("fit")
    if fit is not None:  # fitted coefficients: how they were fitted, then the decomposition's settings
        decomposition_rows += [("fitted with", fit["decomposition"]), ("fit steps", fit["steps"])]
        if fit.get("normalization"):
            decomposition_rows.append(("fit normalization", _text(fit["normalization"])))
        manifest = decomposition.decomposition.manifest
    decomposition_rows += [(key.replace("_", " "), value) for key, value in (manifest.get("config") or {}).items()]
    for key in ("final_loss", "median_step_seconds", "device", "memory_budget", "cluster"):
        if manifest.get(key) is not None:
            decomposition_rows.append((key.replace("_", " "), manifest[key]))
    provenance = manifest.get("provenance") or {}
    if provenance.get("command"):
        decomposition_rows.append(("command", provenance["command"]))
    fit_command = ((fit or {}).get("provenance") or {}).get("command")
    if fit_command:
        decomposition_rows.append(("fit command", fit_command))
    return store_rows, decomposition_rows


def _perturbation(decomposition, perturbation):
    """The perturbation results to show: those given (a path), else ``DECOMPOSITION/perturbation``
    when it holds finished results, else None. For fitted coefficients, only results given, of the
    decomposition they were fitted with (its components; measured on its own store's examples)."""
    from npeff.store.perturbation import open_perturbation

    fitted = getattr(decomposition, "decomposition", None)
    if fitted is not None:
        if perturbation is None:
            return None
        decomposition = fitted
    if perturbation is None:
        found = Path(decomposition.path) / "perturbation"
        if not (found / "summary.json").is_file():
            return None
        perturbation = found
    opened = open_perturbation(perturbation)
    if opened.summary is None:
        raise InvalidArgumentError(f"{opened.path} holds no finished perturbation (no summary.json); "
                                   f"run npeff perturb to the end first")
    if Path(opened.manifest.get("decomposition", "")).resolve() != Path(decomposition.path).resolve():
        raise InvalidArgumentError(f"{opened.path} perturbed {opened.manifest.get('decomposition')}, "
                                   f"not {decomposition.path}")
    return opened


def _magnitude_rule(settings: dict) -> str:
    if settings.get("magnitude") is not None:
        return f"an L2 norm of {settings['magnitude']:g}"
    if settings.get("relative_magnitude") is not None:
        return f"{settings['relative_magnitude']:g} times the norm of the included parameters"
    return f"the magnitude at which the baseline examples' mean KL is {settings.get('target_kl'):g} nats"


def comparison_rows(decomposition, store, others, *,
                    support_threshold: float = analysis.DEFAULT_SUPPORT_THRESHOLD) -> list[dict]:
    """Table 1's rows for the report: this decomposition first, then each of ``others`` (outputs of
    other methods over the same examples: paths or opened decompositions, each with its own store)."""
    rows = [analysis.method_row(decomposition, store, support_threshold=support_threshold)]
    rows += [analysis.method_row(other, support_threshold=support_threshold) for other in others]
    table = []
    for row in rows:
        summary, classifier = row["summary"], row["classifier"] or {}
        table.append({"name": row["name"], "method": row["method"], "n_components": summary["n_components"],
                      "n_included": summary["n_included"], "pred": summary["prediction_tuned_pct"],
                      "label": summary["label_tuned_pct"], "lnp": summary["lnp_tuned_pct"],
                      "accuracy": None if classifier.get("accuracy") is None else 100 * classifier["accuracy"],
                      "agreement": None if classifier.get("agreement_with_model") is None
                      else 100 * classifier["agreement_with_model"]})
    return table


def build_report(decomposition, store=None, *, k: int = 16, perturbation=None, compare=(),
                 support_threshold: float = analysis.DEFAULT_SUPPORT_THRESHOLD, spectrum=False,
                 spectrum_normalize: str = "max") -> str:
    """The report page as a string.

    Args:
        decomposition: an opened decomposition (``W`` ``[m, C]``, losses, manifest) or fitted
            coefficients (:func:`~npeff.ops.analysis.fitted.open_fitted`), or a path to either.
        store: its store (path or handle); by default the one it records, checked to belong.
        k: top examples shown per component (at most ``m``).
        perturbation: results of ``npeff perturb`` on this decomposition (a path); by default
            ``DECOMPOSITION/perturbation`` when it is there. Their ratios go on the cards and a
            summary to the top of the page.
        compare: outputs of other methods over the same examples (G-NPEFF, ``npeff cluster``,
            ``npeff sae``; paths or opened), shown beside this one as in the paper's Table 1.
        support_threshold: the effective support's threshold (a fraction of each component's
            largest coefficient), shown on the page.
        spectrum: True to add the mean eigenvalue decay of the store's PEFs (one pass over the
            store, :func:`~npeff.ops.analysis.spectrum.pef_spectrum`), or a computed
            :class:`~npeff.ops.analysis.spectrum.Spectrum`; False (default) for none.
        spectrum_normalize: the spectrum's normalisation when it is computed here.

    Notes:
        Each column of ``W`` is sorted once, for both the top examples and the tunings; the page
        holds ``C * k`` example texts. The spectrum streams the store (pieces of 32 MiB).
    """
    import jinja2

    from npeff import __version__

    decomposition = analysis.open_analysable(decomposition)
    store = analysis.open_store_for(decomposition, store)
    W = decomposition.W
    k = min(k, W.shape[0])
    columns = analysis.example_columns(store)
    names = analysis.label_names(store)
    tops = analysis.top_indices(W, min(max(k, analysis.TUNING_TOP), W.shape[0]),  # each column sorted once
                                support_threshold=support_threshold)
    tunings = analysis.compute_tunings(W, columns["label"], columns["prediction"], tops=tops,
                                       support_threshold=support_threshold)
    if spectrum is True:
        spectrum = analysis.pef_spectrum(store, normalize=spectrum_normalize)
    spectrum = spectrum or None
    mass = W.sum(axis=0)
    perturbed = _perturbation(decomposition, perturbation)
    records = perturbed.records if perturbed is not None else {}
    components = []
    for tuning in tunings.components:
        c = tuning.component
        components.append({
            "index": c, "n_nonzero": tuning.n_nonzero, "n_effective": tuning.n_effective, "mass": float(mass[c]),
            "included": tuning.included,
            "prediction_tuned": tuning.prediction_tuned, "label_tuned": tuning.label_tuned, "lnp": tuning.lnp,
            "prediction_text": _name(tuning.prediction, names), "label_text": _name(tuning.label, names),
            "tuned_rank": 3 * tuning.lnp + 2 * tuning.label_tuned + tuning.prediction_tuned,
            "perturbation": records.get(c),
            "examples": [{
                "rank": rank + 1, "coefficient": float(W[i, c]), "source_id": columns["source_id"][i] or "",
                "label_text": _name(columns["label"][i], names),
                "prediction_text": _name(columns["prediction"][i], names), "text": columns["text"][i] or "",
            } for rank, i in enumerate(tops[c][:k])],
        })
    config = decomposition.manifest.get("config") or {}
    fitted = getattr(decomposition, "decomposition", None)
    store_rows, decomposition_rows = settings_rows(store, decomposition)
    loss_caption = None if fitted is None else (
        f"Loss at every step of the decomposition the coefficients were fitted with ({fitted.path.name}).")
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    return environment.get_template(TEMPLATE).render(
        title=decomposition.path.name, m=W.shape[0], n_components=W.shape[1], version=__version__,
        written=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        store_settings=store_rows, decomposition_settings=decomposition_rows,
        analysed_heading="Fitted coefficients" if fitted is not None else "Decomposition",
        fitted_with=None if fitted is None else str(fitted.path),
        plots=plots(W, decomposition.losses, config.get("warmup_steps"), support_threshold=support_threshold,
                    spectrum=spectrum, loss_caption=loss_caption),
        spectrum=spectrum,
        tuning_summary=tunings.summary(), components=components,
        comparison=comparison_rows(decomposition, store, compare, support_threshold=support_threshold)
        if compare else None,
        perturbation=None if perturbed is None else dict(
            perturbed.summary, magnitude_rule=_magnitude_rule(perturbed.summary.get("settings") or {})),
        fmt_pct=lambda value: "n/a" if value is None else f"{value:.1f}%",
        fmt_ratio=lambda value: "n/a" if value is None else f"{value:.3g}",
    )


def write_report(decomposition, store=None, *, out: str | os.PathLike, k: int = 16,
                 overwrite: bool = False, perturbation=None, compare=(),
                 support_threshold: float = analysis.DEFAULT_SUPPORT_THRESHOLD, spectrum=False,
                 spectrum_normalize: str = "max") -> Path:
    """Write the report to ``out`` (an ``.html`` file) atomically; returns its path.

    The arguments are those of :func:`build_report`.

    Raises:
        InvalidArgumentError: ``out`` does not end in ``.html``/``.htm`` or its folder does not exist.
        StoreExistsError: (an ``OutputExistsError``) ``out`` is a directory, or a file and ``overwrite``
            is not set.
    """
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InvalidArgumentError(f"the report is an HTML file: --out must end in .html, got {out}")
    if out.is_dir():
        raise StoreExistsError(f"{out} is a directory; give a file name ending in .html")
    if out.exists() and not overwrite:
        raise StoreExistsError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise InvalidArgumentError(f"the folder {out.parent} does not exist")
    page = build_report(decomposition, store, k=k, perturbation=perturbation, compare=compare,
                        support_threshold=support_threshold, spectrum=spectrum,
                        spectrum_normalize=spectrum_normalize)
    _files.atomic_write_bytes(out, page.encode("utf-8"))
    return out


__all__ = ["build_report", "comparison_rows", "settings_rows", "write_report"]
