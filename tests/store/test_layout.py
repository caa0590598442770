"""Store layout: file names of shards and table parts, default shard sizes, the tensor's spec."""

import dataclasses

import pytest

from npeff.errors import StoreCorruptError
from npeff.store._layout import (
    default_layout,
    is_store,
    open_array,
    shard_data_path,
    shard_table_path,
    table_part_index,
    tensorstore_spec,
)
from tests.store.helpers import build


def test_default_shards_are_tens_of_megabytes():
    shard, chunk = default_layout(8, 8192, "float32")
    assert shard % chunk == 0
    assert 64 << 20 <= shard * 8 * 8192 * 4 <= 160 << 20
    assert default_layout(64, 65536, "float32") == (8, 1)  # 16 MiB examples: small shards
    assert default_layout(8, 8192, "float16")[0] == 2 * shard  # half the bytes per example


def test_shard_paths(tmp_path):
    assert shard_data_path(tmp_path, 3) == tmp_path / "pefs" / "c" / "3" / "0" / "0"
    assert shard_table_path(tmp_path, 3) == tmp_path / "examples" / "part-000003.parquet"
    assert table_part_index(shard_table_path(tmp_path, 1234567).name) == 1234567


@pytest.mark.parametrize("name", ["part-000003.parquet.partial", ".part-000003.parquet.x1.partial",
                                  "part-.parquet", "notes.txt"])
def test_other_names_are_not_table_parts(name):
    assert table_part_index(name) is None


def test_a_built_store_follows_the_layout(tmp_path):
    store = build(tmp_path / "s", 12, 2, 32, shard=5, chunk=1)
    assert is_store(store.path) and not is_store(tmp_path)
    assert (store.path / "pefs" / "zarr.json").is_file()
    for shard in range(3):
        assert shard_data_path(store.path, shard).is_file() and shard_table_path(store.path, shard).is_file()
    assert not shard_data_path(store.path, 3).exists()


def test_tensor_spec_checks_every_inner_chunk(tmp_path):
    store = build(tmp_path / "s", 4, 2, 32, shard=4, chunk=2)
    metadata = tensorstore_spec(store.path, store.config)["metadata"]
    assert metadata["chunk_grid"]["configuration"]["chunk_shape"] == [4, 2, 32]
    sharding = metadata["codecs"][0]["configuration"]
    assert sharding["chunk_shape"] == [2, 2, 32]
    assert {"name": "crc32c"} in sharding["codecs"] and {"name": "crc32c"} in sharding["index_codecs"]
    assert open_array(store.path).domain.shape == (4, 2, 32)


@pytest.mark.parametrize("change", [{"dim": 64, "projection": {"kind": "external"}}, {"rank": 3},
                                    {"dtype": "float16"}])
def test_open_for_writing_refuses_a_tensor_unlike_the_manifest(tmp_path, change):
    store = build(tmp_path / "s", 4, 2, 32, shard=4, chunk=2)
    config = dataclasses.replace(store.config, **change)
    with pytest.raises(StoreCorruptError, match=r"holds a \[4, 2, 32\] float32 array, the manifest says"):
        open_array(store.path, config=config)
