"""Cleaning a store an interrupted build left, before it is resumed."""

from __future__ import annotations

from pathlib import Path

from npeff.errors import StoreCorruptError
from npeff.store import _files
from npeff.store._layout import EXAMPLES, PEFS, table_part_index


def discard_uncommitted(root: Path, keep: int) -> None:
    """Remove what an interrupted build left beyond its first ``keep`` shards: their tensor
    shard files, table parts and staged ``.partial`` files. Never follows a symbolic link: a store
    whose folder is one is refused, a link inside is unlinked, not followed.

    Raises:
        StoreCorruptError: ``pefs``, ``pefs/c`` or ``examples`` is a symbolic link (nothing deleted).
    """
    chunk_root = root / PEFS / "c"
    for folder in (root / PEFS, chunk_root, root / EXAMPLES):
        if folder.is_symlink():  # cleaning through it could delete files outside the store
            raise StoreCorruptError(f"{folder} is a symbolic link; a store's folders must be its own. "
                                    f"Refusing to resume (nothing was deleted)")
    if chunk_root.is_dir():
        for entry in chunk_root.iterdir():
            if not entry.name.isdigit() or int(entry.name) >= keep:
                _files.remove_no_links(entry)
    (root / EXAMPLES).mkdir(exist_ok=True)  # absent when the first writer was killed right after its manifest
    for entry in (root / EXAMPLES).iterdir():
        index = table_part_index(entry.name)
        if index is None or index >= keep:
            _files.remove_no_links(entry)
    for partial in _files.walk_no_links(root):
        if partial.name.endswith(_files.PARTIAL_SUFFIX):
            _files.remove_no_links(partial)
