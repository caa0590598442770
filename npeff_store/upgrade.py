"""Bringing a store written by an earlier npeff up to date in place (``npeff upgrade``): the zarr
root group and the tensor's dimension names, which let zarr and xarray open the store, and the
checksum of the tensor metadata in the manifest, which readers then check on opening. The data and
the table are not touched, so their checksums and the content id stay as they were."""

from __future__ import annotations

import os

from npeff.errors import InvalidArgumentError, StoreCorruptError
from npeff.store import _files
from npeff.store._layout import DIMENSION_NAMES, MANIFEST, PEFS, ROOT_GROUP, TENSOR_METADATA, root_group
from npeff.store.integrity import open_tensor
from npeff.store.reader import open_store


def upgrade_store(path: str | os.PathLike) -> list[str]:
    """Add what a finalized local store written by an earlier npeff lacks; returns what was
    changed (empty when it was up to date). Each file is replaced atomically.

    The tensor metadata's checksum is recorded only once the metadata agrees with the manifest
    (:func:`~npeff.store.integrity.open_tensor`): an edited file is refused, never certified.

    Raises:
        InvalidArgumentError: the store is remote or in the Hub's cache, or still being built.
        StoreNotFoundError, StoreCorruptError: no store, an unreadable manifest, or tensor
            metadata that fails its recorded checksum or disagrees with the manifest.
    """
    store = open_store(path)  # refuses tensor metadata that fails a recorded checksum
    root = store.location.local
    if root is None or store.revision is not None:
        raise InvalidArgumentError(f"npeff upgrade changes a local store in place; {store.url} is not one")
    if store.status != "finalized":
        raise InvalidArgumentError(f"{store.path} is still being built; finish (or resume) the build first")
    _array, problem = open_tensor(store.location, store.store_manifest)
    if problem is not None:
        raise StoreCorruptError(f"{store.path}: {problem}; it cannot be upgraded (run `npeff verify`)")
    changes = []
    array_path = root / PEFS / ROOT_GROUP
    metadata = _files.read_json(array_path, what="tensor metadata")
    if metadata.get("dimension_names") != list(DIMENSION_NAMES):
        metadata["dimension_names"] = list(DIMENSION_NAMES)
        _files.atomic_write_json(array_path, metadata)
        changes.append(f"{PEFS}/{ROOT_GROUP}: dimension names {', '.join(DIMENSION_NAMES)}")
    checksum = _files.file_checksum(array_path)
    if store.store_manifest.tensor_metadata_checksum != checksum:
        manifest = store.store_manifest.replace(tensor_metadata_checksum=checksum)
        _files.atomic_write_json(root / MANIFEST, manifest.to_dict())
        changes.append(f"{MANIFEST}: the checksum of {TENSOR_METADATA}")
    group = root_group(store.config, metadata)
    try:
        current = _files.read_json(root / ROOT_GROUP, what="root group")
    except (FileNotFoundError, ValueError):
        current = None
    if current != group:
        _files.atomic_write_json(root / ROOT_GROUP, group)
        changes.append(f"{ROOT_GROUP}: the zarr root group with npeff's attributes")
    return changes
