"""One row per method for the comparison of section 3.1 (Table 1) and 3.3 (Table 3): the tunings and
the tuning classifier of a decomposition, a gradient clustering or an SAE over the same examples."""

from __future__ import annotations

from pathlib import Path

from npeff.errors import InvalidArgumentError
from npeff.ops.analysis.classifier import tuning_classifier
from npeff.ops.analysis.source_store import example_columns, label_names, open_store_for
from npeff.ops.analysis.tuning import compute_tunings


def method_row(decomposition, store=None, *, name: str | None = None) -> dict:
    """The comparison row of one output: ``name``, ``method``, ``tunings`` (:class:`Tunings`),
    ``summary`` (its percentages), ``classifier`` (the tuning classifier's summary, None without
    gold labels) and the store's ``label_names``."""
    from npeff.store.decomposition import open_decomposition

    decomposition = decomposition if hasattr(decomposition, "W") else open_decomposition(decomposition)
    store = open_store_for(decomposition, store)
    columns = example_columns(store)
    result = compute_tunings(decomposition.W, columns["label"], columns["prediction"])
    try:
        classifier = tuning_classifier(decomposition.W, columns["label"], columns["prediction"]).summary()
    except InvalidArgumentError:  # a store without gold labels
        classifier = None
    return {"name": name or Path(decomposition.path).name, "path": str(decomposition.path),
            "method": getattr(decomposition, "method", "npeff"), "tunings": result, "summary": result.summary(),
            "classifier": classifier, "label_names": label_names(store)}


__all__ = ["method_row"]
