"""Where a PEF store keeps what: file names, shard paths, default shard sizes, and the TensorStore
spec of the tensor ``G[m, r, d]`` (a sharded zarr v3 array), with the function that opens it.

Layout::

    STORE/zarr.json                   zarr v3 root group: npeff's attributes (and, once finalized, the
                                      tensor's metadata consolidated), so zarr and xarray open STORE
    STORE/README.md                   optional dataset card (``npeff card``)
    STORE/manifest.json               what the store is (written atomically; status building|finalized)
    STORE/progress.json               committed shards while building (the commit point of a shard)
    STORE/pefs/zarr.json              zarr v3 metadata; shards of ``shard_examples`` examples
    STORE/pefs/c/<i>/0/0              shard i: inner chunks with crc32c, shard index with crc32c
    STORE/examples/part-<i>.parquet   table rows of shard i (declared schema)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from npeff.errors import StoreCorruptError
from npeff.store.location import StoreLocation, parse_location
from npeff.store.manifest import FORMAT_NAME, StoreConfig

MANIFEST = "manifest.json"
ROOT_GROUP = "zarr.json"
CARD = "README.md"
#: the tensor's zarr dimension names (xarray's dims)
DIMENSION_NAMES = ("example", "row", "feature")
PROGRESS = "progress.json"
PEFS = "pefs"
#: the tensor's zarr metadata, below the store's root (its checksum is in the finalized manifest)
TENSOR_METADATA = f"{PEFS}/zarr.json"
EXAMPLES = "examples"
#: the top-level names of a store (anything else is not part of it)
KNOWN_NAMES = frozenset({MANIFEST, PROGRESS, PEFS, EXAMPLES, ROOT_GROUP, CARD})
TARGET_SHARD_BYTES = 128 << 20
TARGET_CHUNK_BYTES = 4 << 20
_TABLE_PART = re.compile(r"part-(\d+)\.parquet$")


def is_store(path: Path) -> bool:
    """Whether ``path`` holds a store (building or finalized): it has a manifest."""
    return (path / MANIFEST).is_file()


def holds_store(path: Path) -> bool:
    """Whether ``path`` holds what npeff wrote as a store: its manifest says so. Only such a
    directory is ever replaced (``--overwrite``) or resumed by a writer; a folder that merely has a
    ``manifest.json`` (a decomposition, a web app) is not."""
    from npeff.store._files import manifest_format
    from npeff.store.manifest import FORMAT_NAME

    return manifest_format(path, MANIFEST) == FORMAT_NAME


def shard_data_key(index: int) -> str:
    """The name, below the store's root, of the file holding shard ``index`` of the tensor (the zarr
    v3 chunk key of a sharded array)."""
    return f"{PEFS}/c/{index}/0/0"


def shard_table_key(index: int) -> str:
    """The name, below the store's root, of the Parquet part holding shard ``index``'s table rows."""
    return f"{EXAMPLES}/part-{index:06d}.parquet"


def shard_data_path(root: Path, index: int) -> Path:
    """The file holding shard ``index`` of the tensor in the local store ``root``."""
    return root / shard_data_key(index)


def shard_table_path(root: Path, index: int) -> Path:
    """The Parquet part holding the example-table rows of shard ``index`` in the local store ``root``."""
    return root / shard_table_key(index)


def table_part_index(name: str) -> int | None:
    """The shard index of a table part's file name, None for a name that is not a table part."""
    match = _TABLE_PART.match(name)
    return None if match is None else int(match.group(1))


def default_layout(rank: int, dim: int, dtype: str) -> tuple[int, int]:
    """``(shard_examples, chunk_examples)`` for ~128 MiB shards of ~4 MiB inner chunks."""
    per_example = rank * dim * (4 if dtype == "float32" else 2)
    chunk = max(1, TARGET_CHUNK_BYTES // per_example)
    shard = max(1, TARGET_SHARD_BYTES // (per_example * chunk)) * chunk
    return shard, chunk


def tensorstore_spec(root: Path, config: StoreConfig | None = None) -> dict:
    """The TensorStore spec of the tensor under the local store ``root``: to open it for writing, or
    (with ``config``) to create it.

    One zarr shard holds ``shard_examples`` examples (all of r and d); inside it, inner chunks of
    ``chunk_examples`` examples are each checked with crc32c, so a partial read checks what it reads.
    """
    spec: dict[str, Any] = {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(root / PEFS)},
        # files are written to a temporary name and renamed (atomic against a killed process);
        # no fsync per shard: durability after a power loss is checked with `npeff verify`
        "context": {"file_io_sync": False},
    }
    if config is not None:
        # every committed shard must exist as a file, also when its examples are all zeros
        spec["store_data_equal_to_fill_value"] = True
        spec["metadata"] = dict(tensor_layout(config), shape=[0, config.rank, config.dim],
                                dimension_names=list(DIMENSION_NAMES),
                                attributes={"npeff": "PEF tensor G[m, r, d]; see ../manifest.json"})
    return spec


def tensor_layout(config: StoreConfig) -> dict:
    """The zarr metadata fields that decide how the bytes of the shards are read: dtype, shard and
    inner-chunk shapes, chunk keys, fill value and codecs (crc32c on every inner chunk and on the
    shard index). A store's ``pefs/zarr.json`` must agree with them; its shape, dimension names and
    attributes are not part of them."""
    little = {"name": "bytes", "configuration": {"endian": "little"}}
    return {
        "data_type": config.dtype,
        "chunk_grid": {"name": "regular",
                       "configuration": {"chunk_shape": [config.shard_examples, config.rank, config.dim]}},
        "chunk_key_encoding": {"name": "default"},
        "fill_value": 0,
        "codecs": [{
            "name": "sharding_indexed",
            "configuration": {
                "chunk_shape": [config.chunk_examples, config.rank, config.dim],
                "codecs": [little, {"name": "crc32c"}],
                "index_codecs": [little, {"name": "crc32c"}],
                "index_location": "end",
            },
        }],
    }


def read_array(location: StoreLocation, config: StoreConfig | None = None):
    """Open the tensor of the store at ``location`` read-only.

    A shard whose file is missing fails the read (``fill_missing_data_reads: false``) instead of
    reading as zeros. With ``config`` (the manifest's), TensorStore also checks that the tensor
    metadata agrees with :func:`tensor_layout` (an edited chunk key encoding or a removed crc32c
    codec fails here, not as zeros or undecodable reads later).

    Raises:
        ValueError: TensorStore's error (metadata missing, unreadable or not the manifest's, the
            location unreachable).
    """
    import tensorstore as ts

    from npeff.store.location import _NETWORK_USED

    if location.kvstore["driver"] in ("http", "s3", "gcs"):
        _NETWORK_USED.append(True)
    spec = {"driver": "zarr3", "kvstore": location.child(PEFS), "fill_missing_data_reads": False}
    if config is not None:
        spec["metadata"] = tensor_layout(config)
    return ts.open(spec, open=True, read=True).result()


def open_array(root: Path, *, config: StoreConfig | None = None):
    """Open the tensor of the local store ``root`` read-only, or (with ``config``) for writing,
    creating it when missing.

    Raises:
        StoreCorruptError: with ``config``, an existing array's ``[r, d]`` or dtype differ from it.
    """
    import tensorstore as ts

    if config is None:
        return read_array(parse_location(root))
    if (root / PEFS / "zarr.json").is_file():
        spec = dict(tensorstore_spec(root), store_data_equal_to_fill_value=True)
        array = ts.open(spec, open=True, read=True, write=True).result()
        expected = (config.rank, config.dim)
        if tuple(array.domain.shape[1:]) != expected or str(array.dtype.numpy_dtype) != config.dtype:
            raise StoreCorruptError(
                f"{root / PEFS} holds a [{', '.join(map(str, array.domain.shape))}] "
                f"{array.dtype.numpy_dtype} array, the manifest says [m, {config.rank}, {config.dim}] {config.dtype}"
            )
        return array
    return ts.open(tensorstore_spec(root, config), create=True, read=True, write=True).result()


def root_group(config: StoreConfig, array_metadata: dict | None = None) -> dict:
    """The root ``zarr.json``: a zarr v3 group whose ``npeff`` attribute says what the store is.

    With ``array_metadata`` (the tensor's ``pefs/zarr.json``, once the store is finalized) it is
    consolidated into the group, so readers (xarray) need not list the store's other files.
    """
    group: dict[str, Any] = {"zarr_format": 3, "node_type": "group", "attributes": {"npeff": {
        "format": FORMAT_NAME, "kind": config.kind, "rank": config.rank, "dim": config.dim,
        "dtype": config.dtype, "fingerprint": config.fingerprint(), "manifest": MANIFEST, "examples": f"{EXAMPLES}/",
    }}}
    if array_metadata is not None:
        group["consolidated_metadata"] = {"kind": "inline", "must_understand": False,
                                          "metadata": {PEFS: array_metadata}}
    return group


def write_root_group(root: Path, config: StoreConfig, *, consolidate: bool) -> None:
    """Write the root group of the local store ``root`` (atomically); with ``consolidate``, the
    tensor's current metadata goes into it (for a finalized store, whose tensor no longer grows)."""
    from npeff.store import _files

    metadata = _files.read_json(root / PEFS / ROOT_GROUP, what="tensor metadata") if consolidate else None
    _files.atomic_write_json(root / ROOT_GROUP, root_group(config, metadata))
