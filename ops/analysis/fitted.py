"""Coefficients fitted by ``npeff fit`` (held-out data, section 2.2 of the NPEFF paper) as the
analyses take them: ``W`` from the coefficients directory, the components ``H`` (and their ids,
the rows of ``H``), the loss curve and the settings from the decomposition they were fitted with
(recorded in their manifest), and the store the fit ran on.

:func:`open_analysable` opens either kind of directory, so every analysis (top examples,
tunings, comparisons, the report) takes a decomposition or fitted coefficients alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from npeff.errors import IncompatibleStoresError, StoreCorruptError, StoreNotFoundError


class FittedCoefficients:
    """Fitted coefficients with the decomposition whose components they weigh.

    Attributes:
        path: the coefficients directory.
        W: the fitted coefficients ``[m, C]`` of the fit's store (read on first use).
        H: the decomposition's components ``[C, d]``; component ``j`` is column ``j`` of ``W``.
        losses, config, method: the decomposition's loss curve, settings and method.
        decomposition: the opened decomposition; ``meta`` the coefficients' manifest.
        manifest: what the analyses read of an artifact's manifest: ``store``,
            ``store_fingerprint`` and ``store_content_id`` of the fit's store, the decomposition's
            ``config`` and ``method``, and ``fit`` (``decomposition``, ``steps``, ``normalization``,
            ``provenance``).

    Notes:
        Memory: ``W`` ``[m, C]``; ``H`` is read only when asked for.
    """

    kind = "coefficients"

    def __init__(self, coefficients, decomposition):
        self.coefficients = coefficients
        self.decomposition = decomposition
        self.path = Path(coefficients.path)
        self.meta = coefficients.meta
        meta = self.meta
        self.manifest = {
            "store": meta.store, "store_fingerprint": meta.store_fingerprint,
            "store_content_id": meta.store_content_id, "num_examples": meta.num_examples,
            "n_components": meta.n_components, "config": dict(decomposition.config), "method": decomposition.method,
            "fit": {"decomposition": str(decomposition.path), "steps": meta.steps,
                    "normalization": meta.normalization, "provenance": meta.provenance},
        }

    @property
    def W(self) -> np.ndarray:
        return self.coefficients.W

    @property
    def H(self) -> np.ndarray:
        return self.decomposition.H

    @property
    def losses(self) -> np.ndarray:
        return self.decomposition.losses

    @property
    def config(self) -> dict:
        return self.decomposition.config

    @property
    def method(self) -> str:
        return self.decomposition.method

    def __repr__(self) -> str:
        return (f"FittedCoefficients({str(self.path)!r}, m={self.meta.num_examples}, C={self.meta.n_components}, "
                f"decomposition={str(self.decomposition.path)!r})")


def _recorded_decomposition(coefficients, decomposition):
    """The decomposition the coefficients were fitted with: ``decomposition`` (a path or an opened
    one) when given, else the path their manifest records."""
    from npeff.store.decomposition import open_decomposition

    if decomposition is not None:
        return decomposition if hasattr(decomposition, "H") else open_decomposition(decomposition)
    recorded = coefficients.meta.decomposition
    try:
        return open_decomposition(recorded)
    except (StoreNotFoundError, StoreCorruptError) as error:
        raise StoreNotFoundError(f"the decomposition {recorded} that {coefficients.path} were fitted with cannot "
                                 f"be opened ({error})") from None


def check_fitted_with(coefficients, decomposition) -> None:
    """Refuse coefficients that do not belong with ``decomposition``.

    Raises:
        StoreCorruptError: ``W`` is not ``[num_examples, n_components]`` of the coefficients' manifest.
        IncompatibleStoresError: the decomposition has another number of components, or its store
            another projection and parameter layout than the fit's store.
    """
    W, meta = coefficients.W, coefficients.meta
    if W.ndim != 2 or W.shape != (meta.num_examples, meta.n_components):
        raise StoreCorruptError(f"{coefficients.path}/W.npy has shape {list(W.shape)} but its manifest says "
                                f"[{meta.num_examples}, {meta.n_components}]")
    n_components = decomposition.meta.n_components
    if meta.n_components != n_components:
        raise IncompatibleStoresError(
            f"{coefficients.path} holds coefficients for {meta.n_components} components but the decomposition "
            f"{decomposition.path} has {n_components}: it is not the decomposition they were fitted with")
    recorded = decomposition.meta.store_fingerprint
    if recorded is not None and recorded != meta.store_fingerprint:
        raise IncompatibleStoresError(
            f"{coefficients.path} were fitted on a store of fingerprint {meta.store_fingerprint} but the "
            f"decomposition {decomposition.path} was computed on one of fingerprint {recorded}: they do not "
            "belong together")


def open_fitted(path: str | os.PathLike, decomposition=None) -> FittedCoefficients:
    """Open the coefficients directory ``path`` with the decomposition they were fitted with.

    Args:
        path: a directory written by ``npeff fit --out``.
        decomposition: the decomposition (a path or an opened one), by default the one the
            coefficients' manifest records.

    Raises:
        StoreNotFoundError: no coefficients at ``path``, or the decomposition cannot be opened.
        StoreCorruptError, IncompatibleStoresError: see :func:`check_fitted_with`.
    """
    from npeff.store.coefficients import open_coefficients

    coefficients = open_coefficients(path)
    decomposition = _recorded_decomposition(coefficients, decomposition)
    check_fitted_with(coefficients, decomposition)
    return FittedCoefficients(coefficients, decomposition)


def open_analysable(path: str | os.PathLike):
    """A decomposition (or a baseline's output in its format) or fitted coefficients, by what the
    directory's manifest says it holds (:func:`~npeff.store.decomposition.open_decomposition` or
    :func:`open_fitted`). An opened one is returned as it is."""
    from npeff.store import _files
    from npeff.store.coefficients import FORMAT_NAME
    from npeff.store.decomposition import open_decomposition

    if hasattr(path, "W"):
        return path
    if _files.manifest_format(Path(path)) == FORMAT_NAME:
        return open_fitted(path)
    return open_decomposition(path)


def kind_of(analysed) -> str:
    """``coefficients`` for fitted coefficients, else ``decomposition`` (for messages)."""
    return getattr(analysed, "kind", "decomposition")


__all__ = ["FittedCoefficients", "check_fitted_with", "kind_of", "open_analysable", "open_fitted"]
