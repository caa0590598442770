"""Reading PEF stores: round trips, checked reads, iteration, dask, pickling and bad opens/reads."""

import json
import pickle

import numpy as np
import pytest

from npeff.errors import InvalidArgumentError, StoreCorruptError, StoreNotFoundError
from npeff.store import EXAMPLE_SCHEMA, create_store, open_store
from npeff.store._layout import shard_data_path
from tests.store.helpers import SSP, build, flip_byte, pef_rows


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("m,rank,dim,shard,chunk", [(13, 3, 64, 5, 1), (1, 1, 32, 4, 2), (20, 2, 32, 10, 5)])
def test_round_trip(tmp_path, dtype, m, rank, dim, shard, chunk):
    store = build(tmp_path / "s", m, rank, dim, dtype=dtype, shard=shard, chunk=chunk)
    expected = pef_rows(0, m, rank, dim)
    if dtype == "float16":
        expected = expected.astype(np.float16).astype(np.float32)
    assert store.num_examples == m and store.rank == rank and store.dim == dim
    data = store.read()
    assert data.dtype == np.float32 and data.shape == (m, rank, dim)
    np.testing.assert_array_equal(data, expected)
    np.testing.assert_array_equal(store.read(m // 2, m), expected[m // 2:])
    assert store.read(m, m).shape == (0, rank, dim)
    chunks = list(store.iter_chunks())
    assert [c.start for c in chunks] == list(range(0, m, shard))
    np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]), expected)
    np.testing.assert_array_equal(store.to_dask().compute(scheduler="threads"), expected)
    table = store.examples
    assert table.schema.equals(EXAMPLE_SCHEMA, check_metadata=False)
    assert table.column("example_index").to_pylist() == list(range(m))
    assert table.column("text").to_pylist() == [f"example {i}" for i in range(m)]
    assert table.column("status").to_pylist() == ["ok"] * m
    assert table.column("rank").to_pylist() == [rank] * m
    assert store.manifest["status"] == "finalized" and store.manifest["num_examples"] == m


def test_empty_store(tmp_path):
    store = create_store(tmp_path / "s", rank=2, dim=32, projection=SSP).finalize()
    assert store.num_examples == 0 and store.read().shape == (0, 2, 32)
    assert store.examples.num_rows == 0 and list(store.iter_chunks()) == []
    assert store.to_dask().shape == (0, 2, 32)


def test_a_store_being_built_shows_its_committed_shards(tmp_path):
    writer = create_store(tmp_path / "s", rank=2, dim=32, projection=SSP, shard_examples=2, chunk_examples=1)
    writer.append(pef_rows(0, 5, 2, 32))
    writer._commit_pending()  # shards 0 and 1 committed, example 4 still buffered
    store = open_store(tmp_path / "s")
    assert store.status == "building" and store.num_examples == 4 and len(store.shards) == 2
    np.testing.assert_array_equal(store.read(), pef_rows(0, 4, 2, 32))
    assert store.examples.num_rows == 4


def test_pickle_and_dask_graph_pickle(tmp_path):
    store = build(tmp_path / "s", 9, 2, 32)
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.read(2, 7), store.read(2, 7))
    graph = pickle.loads(pickle.dumps(store.to_dask()))
    np.testing.assert_array_equal(graph.compute(scheduler="sync"), store.read())
    assert graph.numblocks == (2, 1, 1)
    np.testing.assert_array_equal(store.to_dask()[3:8:2, 1].compute(scheduler="sync"), store.read()[3:8:2, 1])


def test_content_id_follows_the_bytes(tmp_path):
    first, same = build(tmp_path / "a", 6, 1, 32), build(tmp_path / "b", 6, 1, 32)
    assert first.content_id == same.content_id
    assert first.content_id != build(tmp_path / "c", 7, 1, 32).content_id
    assert first.content_id != build(tmp_path / "d", 6, 1, 32, dtype="float16").content_id


def _no_directory(root):
    return root / "missing"


def _empty_directory(root):
    (root / "empty").mkdir()
    return root / "empty"


def _manifest_text(text):
    def damage(root):
        build(root / "s", 4, 1, 32)
        (root / "s" / "manifest.json").write_bytes(text if isinstance(text, bytes) else text.encode())
        return root / "s"
    return damage


def _manifest_change(**changes):
    def damage(root):
        build(root / "s", 4, 1, 32)
        manifest = json.loads((root / "s" / "manifest.json").read_text())
        (root / "s" / "manifest.json").write_text(json.dumps({**manifest, **changes}))
        return root / "s"
    return damage


def _progress_text(text):
    def damage(root):
        writer = create_store(root / "s", rank=1, dim=32, projection=SSP, shard_examples=2, chunk_examples=1)
        writer.append(pef_rows(0, 3, 1, 32))
        (root / "s" / "progress.json").write_text(text)
        return root / "s"
    return damage


def _progress_record(*shards):
    """A progress record of shards ``(index, start, stop)`` (for a store of 2-example shards)."""
    return _progress_text(json.dumps({"shards": [
        {"index": i, "start": start, "stop": stop, "data_checksum": "a", "table_checksum": "b"}
        for i, start, stop in shards]}))


@pytest.mark.parametrize(
    "damage,error,match",
    [
        (_no_directory, StoreNotFoundError, "no store at .* does not exist"),
        (_empty_directory, StoreNotFoundError, "has no manifest.json"),
        (_manifest_text("{not json"), StoreCorruptError, "manifest.json is not valid JSON"),
        (_manifest_text("[1, 2]"), StoreCorruptError, "must hold a JSON object, got list"),
        (_manifest_text(b"\xff\xfe{}"), StoreCorruptError, "manifest.json is not a text file"),
        (_manifest_text(json.dumps({"format": "something-else"})), StoreCorruptError,
         "not an npeff PEF store manifest"),
        (_manifest_change(rank=0), StoreCorruptError, "manifest.json is invalid: rank must be an integer >= 1"),
        (_manifest_change(num_examples=5), StoreCorruptError, "says 5 examples but its shards hold 4"),
        (_progress_text("{"), StoreCorruptError, "progress.json is not valid JSON"),
        (_progress_text('{"chunks": []}'), StoreCorruptError, "progress.json is unreadable"),
        (_progress_record((0, 0, 0)), StoreCorruptError, "progress.json is unreadable: shard 0 is empty"),
        (_progress_record((1, 0, 2)), StoreCorruptError, "out of order at shard 0"),
        (_progress_record((0, 0, 2), (1, 2, 3), (2, 3, 4)), StoreCorruptError, "shard 1 holds 1 examples"),
    ],
)
def test_bad_opens(tmp_path, damage, error, match):
    with pytest.raises(error, match=match):
        open_store(damage(tmp_path))


@pytest.mark.parametrize(
    "start,stop,match",
    [
        (2, 9, r"cannot read examples \[2, 9\) of a store holding 4"),
        (3, 2, r"cannot read examples \[3, 2\)"),
        (-1, 2, r"cannot read examples \[-1, 2\)"),
        (1.5, 3, "start must be an integer, got 1.5"),
        (0, True, "stop must be an integer, got True"),
        ("0", 2, "start must be an integer"),
    ],
)
def test_bad_reads(tmp_path, start, stop, match):
    store = build(tmp_path / "s", 4, 1, 32)
    with pytest.raises(InvalidArgumentError, match=match):
        store.read(start, stop)


def test_checked_read_names_the_corrupt_shard(tmp_path):
    store = build(tmp_path / "s", 12, 2, 32, shard=4, chunk=2)
    flip_byte(shard_data_path(tmp_path / "s", 1), 200)
    fresh = open_store(tmp_path / "s")
    np.testing.assert_array_equal(fresh.read(0, 4), pef_rows(0, 4, 2, 32))
    with pytest.raises(StoreCorruptError, match="shard 1 .*checksum"):
        fresh.read(4, 8)
    with pytest.raises(StoreCorruptError, match="shard 1"):
        list(fresh.iter_chunks())
    assert store.num_examples == 12


def test_missing_shard_file_is_an_error_not_zeros(tmp_path):
    build(tmp_path / "s", 12, 2, 32, shard=4, chunk=2)
    shard_data_path(tmp_path / "s", 2).unlink()
    with pytest.raises(StoreCorruptError, match="shard 2 .*missing its data file"):
        open_store(tmp_path / "s").read(0, 12)


def test_missing_table_part_is_an_error(tmp_path):
    build(tmp_path / "s", 12, 2, 32, shard=4, chunk=2)
    (tmp_path / "s" / "examples" / "part-000001.parquet").unlink()
    with pytest.raises(StoreCorruptError, match="shard 1 of .*: table part examples/part-000001.parquet is missing"):
        open_store(tmp_path / "s").examples
