"""A decomposition and the store it was computed from: checking that they belong together, opening
the store a decomposition records, and reading the store's per-example columns and class names."""

from __future__ import annotations

from typing import Any, Sequence

from npeff.errors import IncompatibleStoresError, InvalidArgumentError

#: the per-example columns the analyses read from a store's example table
EXAMPLE_COLUMNS = ("example_index", "source_id", "text", "label", "prediction", "status")


def check_belongs(decomposition, store) -> None:
    """Refuse a store that is not the one ``decomposition`` was computed from (for fitted
    coefficients, the one they were fitted on).

    Compares the number of examples, then (when the decomposition records them) the store's
    fingerprint (projection and parameter layout) and content id (its shards' checksums).

    Raises:
        IncompatibleStoresError: any of them differs.
    """
    manifest = decomposition.manifest
    m = decomposition.W.shape[0]
    kind = getattr(decomposition, "kind", "decomposition")
    if store.num_examples != m:
        raise IncompatibleStoresError(
            f"{store.path} has {store.num_examples} examples but the {kind} {decomposition.path} "
            f"has coefficients for {m}: they do not belong together")
    fingerprint = manifest.get("store_fingerprint")
    if fingerprint is not None and fingerprint != store.fingerprint:
        raise IncompatibleStoresError(
            f"{store.path} was not built with the projection and parameter layout of the store the {kind} "
            f"{decomposition.path} was computed from (fingerprint {store.fingerprint} != {fingerprint})")
    content = manifest.get("store_content_id")
    if content is not None and content != store.content_id:
        raise IncompatibleStoresError(
            f"{store.path} does not hold the examples the {kind} {decomposition.path} was computed from "
            "(its shards' checksums differ)")


def open_store_for(decomposition, store=None, *, option: str = "--store"):
    """The store given (path or handle), else the one the decomposition records; checked to belong.

    ``option`` names the command-line option that gives another store, for the messages.

    Raises:
        InvalidArgumentError: no store is given and the decomposition records none.
        StoreNotFoundError: the recorded store is not there any more.
        IncompatibleStoresError: the store is not the decomposition's (see :func:`check_belongs`).
    """
    from npeff.errors import StoreNotFoundError
    from npeff.store import PefStore, open_store

    if store is None:
        recorded = decomposition.manifest.get("store")
        if recorded is None:
            raise InvalidArgumentError(f"{decomposition.path} records no store; pass {option}")
        try:
            store = open_store(recorded)
        except StoreNotFoundError as error:
            raise StoreNotFoundError(
                f"the store {recorded} recorded by {decomposition.path} cannot be opened ({error}); "
                f"pass {option}") from None
    elif not isinstance(store, PefStore):
        store = open_store(store)
    check_belongs(decomposition, store)
    return store


def example_columns(store) -> dict[str, list]:
    """The columns :data:`EXAMPLE_COLUMNS` of the store's example table, each a list of ``m`` values.

    Notes:
        Reads the whole table (text included) into Python lists; the PEF tensor is not read.
    """
    table = store.examples
    return {name: table.column(name).to_pylist() for name in EXAMPLE_COLUMNS}


def label_name(value: Any, names: Sequence[str] | None) -> str:
    """A class index as its name when the store knows it (``-`` for a missing value)."""
    if value is None:
        return "-"
    if names is not None and isinstance(value, int) and 0 <= value < len(names):
        return names[value].strip()
    return str(value)


def label_names(store) -> list[str] | None:
    """The class names the store's task records (``label_names`` or ``labels``), or None."""
    spec = store.config.pef_spec or {}
    names = spec.get("label_names") or spec.get("labels")
    return [str(n) for n in names] if names else None


__all__ = ["EXAMPLE_COLUMNS", "check_belongs", "example_columns", "label_name", "label_names", "open_store_for"]
