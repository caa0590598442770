"""Bringing a store written by an earlier npeff up to date in place (``npeff upgrade``): the zarr
root group and the tensor's dimension names, which let zarr and xarray open the store. The data,
the table and the manifest are not touched, so checksums and content ids stay as they were."""

from __future__ import annotations

import os

from npeff.errors import InvalidArgumentError
from npeff.store import _files
from npeff.store._layout import DIMENSION_NAMES, PEFS, ROOT_GROUP, root_group
from npeff.store.reader import open_store


def upgrade_store(path: str | os.PathLike) -> list[str]:
    """Add what a finalized local store written by an earlier npeff lacks; returns what was
    changed (empty when it was up to date). Each file is replaced atomically.

    Raises:
        InvalidArgumentError: the store is remote or in the Hub's cache, or still being built.
        StoreNotFoundError, StoreCorruptError: no store, or an unreadable manifest.
    """
    store = open_store(path)
    root = store.location.local
    if root is None or store.revision is not None:
        raise InvalidArgumentError(f"npeff upgrade changes a local store in place; {store.url} is not one")
    if store.status != "finalized":
        raise InvalidArgumentError(f"{store.path} is still being built; finish (or resume) the build first")
    changes = []
    array_path = root / PEFS / ROOT_GROUP
    metadata = _files.read_json(array_path, what="tensor metadata")
    if metadata.get("dimension_names") != list(DIMENSION_NAMES):
        metadata["dimension_names"] = list(DIMENSION_NAMES)
        _files.atomic_write_json(array_path, metadata)
        changes.append(f"{PEFS}/{ROOT_GROUP}: dimension names {', '.join(DIMENSION_NAMES)}")
    group = root_group(store.config, metadata)
    try:
        current = _files.read_json(root / ROOT_GROUP, what="root group")
    except (FileNotFoundError, ValueError):
        current = None
    if current != group:
        _files.atomic_write_json(root / ROOT_GROUP, group)
        changes.append(f"{ROOT_GROUP}: the zarr root group with npeff's attributes")
    return changes
