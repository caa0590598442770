"""One row per method for the comparison of section 3.1 (Table 1) and 3.3 (Table 3): the tunings and
the tuning classifier of a decomposition, a gradient clustering or an SAE over the same examples."""

from __future__ import annotations

from pathlib import Path

from npeff.errors import InvalidArgumentError
from npeff.ops.analysis.classifier import tuning_classifier
from npeff.ops.analysis.coefficients import DEFAULT_SUPPORT_THRESHOLD
from npeff.ops.analysis.fitted import open_analysable
from npeff.ops.analysis.source_store import example_columns, label_names, open_store_for
from npeff.ops.analysis.tuning import compute_tunings


def method_row(decomposition, store=None, *, name: str | None = None,
               support_threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> dict:
    """The comparison row of one output: ``name``, ``method``, ``tunings`` (:class:`Tunings`),
    ``summary`` (its percentages), ``classifier`` (the tuning classifier's summary, None without
    gold labels) and the store's ``label_names``.

    ``decomposition``: a path or an opened decomposition, baseline output or fitted coefficients
    (see :func:`~npeff.ops.analysis.fitted.open_analysable`); components are counted by their
    effective support (``support_threshold``, see :mod:`npeff.ops.analysis.coefficients`).
    """
    decomposition = open_analysable(decomposition)
    store = open_store_for(decomposition, store)
    columns = example_columns(store)
    result = compute_tunings(decomposition.W, columns["label"], columns["prediction"],
                             support_threshold=support_threshold)
    try:
        classifier = tuning_classifier(decomposition.W, columns["label"], columns["prediction"],
                                       support_threshold=support_threshold).summary()
    except InvalidArgumentError:  # a store without gold labels
        classifier = None
    return {"name": name or Path(decomposition.path).name, "path": str(decomposition.path),
            "method": getattr(decomposition, "method", "npeff"),
            "kind": getattr(decomposition, "kind", "decomposition"), "tunings": result, "summary": result.summary(),
            "classifier": classifier, "label_names": label_names(store)}


__all__ = ["method_row"]
