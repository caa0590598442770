"""Exporting a PEF store (``npeff export``) as a Hugging Face ``datasets`` folder that loads
without npeff: the example table as Parquet, the tensor as zarr, the manifest, a dataset card."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from npeff.errors import InvalidArgumentError, StoreExistsError
from npeff.store import _files
from npeff.store._layout import MANIFEST, PEFS, shard_table_path
from npeff.store._progress_bar import shard_progress
from npeff.store.card import dataset_card
from npeff.store.reader import open_store

EXPORT_MANIFEST = "npeff_manifest.json"


def export_hf(store_path: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
              progress: bool = False) -> Path:
    """Export a finalized store as a Hugging Face ``datasets`` folder.

    ``out/data/train-*.parquet`` hold the example table (loadable with
    ``datasets.load_dataset("parquet", data_files=...)`` or ``load_dataset(out)``), ``out/pefs``
    the zarr tensor (hard links when possible, else copies), ``out/npeff_manifest.json`` the
    manifest, ``out/README.md`` a dataset card. Written into a temporary directory beside ``out``
    and renamed at the end: ``out`` never holds half an export.

    Raises:
        InvalidArgumentError: the store is still being built.
        StoreExistsError: ``out`` holds an export and ``overwrite`` is not set, or it is a file
            or a non-empty directory that is not an export.
    """
    store = open_store(store_path)
    if store.status != "finalized":
        raise InvalidArgumentError(f"{store.path} is still being built; finalize it before exporting")
    out = Path(out)
    action = _files.check_output_dir(out, what="dataset export", is_ours=_is_export, overwrite=overwrite,
                                     exists=StoreExistsError)
    with _files.atomic_directory(out, replace=action == "replace") as staging:
        (staging / "data").mkdir()
        count = len(store.shards)
        for shard in shard_progress(store.shards, total=count, desc="export", enabled=progress):
            shutil.copyfile(shard_table_path(store.path, shard.index),
                            staging / "data" / f"train-{shard.index:05d}-of-{count:05d}.parquet")
        shutil.copytree(store.path / PEFS, staging / PEFS, copy_function=_link_or_copy)
        shutil.copyfile(store.path / MANIFEST, staging / EXPORT_MANIFEST)
        (staging / "README.md").write_text(dataset_card(store), encoding="utf-8")
    return out


def _is_export(path: Path) -> bool:
    return (path / EXPORT_MANIFEST).is_file()


def _link_or_copy(source: str, target: str) -> None:
    """Hard-link ``source`` to ``target`` (stores are immutable once finalized), else copy it."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
