"""PEF store: round trips, NaN handling, bad inputs, checked reads, dask and pickling."""

import json
import pickle

import numpy as np
import pyarrow as pa
import pytest
import torch

from npeff.cuda_ops import ProjectionSpec
from npeff.errors import (
    InvalidArgumentError,
    NpeffError,
    StoreCorruptError,
    StoreExistsError,
    StoreNotFoundError,
)
from npeff.store import EXAMPLE_SCHEMA, ParameterLayout, create_store, open_store
from npeff.store._layout import default_layout, shard_data_path
from tests.store.helpers import example_records, pef_rows

SSP = {"kind": "ssp-v1", "seed": 3}


def build(path, m, rank, dim, *, dtype="float32", shard=5, chunk=1, batches=(3, 7, 1), **kwargs):
    writer = create_store(path, rank=rank, dim=dim, projection=kwargs.pop("projection", SSP),
                          dtype=dtype, shard_examples=shard, chunk_examples=chunk, **kwargs)
    position, sizes = 0, list(batches)
    while position < m:
        step = min(sizes[0] if sizes else m, m - position)
        sizes = sizes[1:] + sizes[:1]
        writer.append(pef_rows(position, position + step, rank, dim),
                      example_records(position, position + step))
        position += step
    return writer.finalize()


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


def test_declared_schema_types():
    assert EXAMPLE_SCHEMA.field("example_index").type == pa.int64()
    assert not EXAMPLE_SCHEMA.field("example_index").nullable
    assert EXAMPLE_SCHEMA.field("label").nullable
    assert EXAMPLE_SCHEMA.field("probs").type == pa.list_(pa.float32())
    assert EXAMPLE_SCHEMA.field("pef_norm").type == pa.float64()
    assert EXAMPLE_SCHEMA.names == ["example_index", "source_id", "text", "label", "prediction",
                                    "probs", "pef_norm", "rank", "status"]


def test_manifest_is_self_describing(tmp_path):
    layout = ParameterLayout.from_shapes([("a.weight", (4, 8)), ("b.bias", (8,))])
    store = build(tmp_path / "s", 6, 2, 64, parameter_layout=layout, pef_spec={"task": "t", "eps": 4},
                  projection=ProjectionSpec(seed=9, d=64), command="npeff build x")
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["projection"] == {"kind": "ssp-v1", "version": 1, "seed": 9, "d": 64,
                                      "region_size": 2, "scale": ProjectionSpec(seed=9, d=64).scale}
    assert manifest["parameter_layout"]["n_total"] == 40
    assert manifest["parameter_layout"]["offsets"] == [0, 32]
    assert manifest["pef_spec"] == {"task": "t", "eps": 4}
    assert manifest["provenance"]["command"] == "npeff build x"
    assert "numpy" in manifest["provenance"]["packages"]
    assert manifest["provenance"]["finalized"] is not None
    assert len(manifest["shards"]) == 2 and all(len(s["data_checksum"]) == 32 for s in manifest["shards"])
    assert manifest["fingerprint"] == store.fingerprint


def test_torch_inputs_and_lower_rank(tmp_path):
    writer = create_store(tmp_path / "s", rank=3, dim=32, projection={"kind": "external"},
                          shard_examples=4, chunk_examples=1)
    g = torch.from_numpy(pef_rows(0, 5, 3, 32))
    g[1, 2] = 0  # example 1 has rank 2
    writer.append(g.to(torch.bfloat16))
    store = writer.finalize()
    np.testing.assert_array_equal(store.read(), g.to(torch.bfloat16).float().numpy())
    assert store.examples.column("rank").to_pylist() == [3, 2, 3, 3, 3]
    assert store.examples.column("source_id").to_pylist() == [None] * 5


def test_non_finite_examples_are_flagged_and_zeroed(tmp_path):
    g = pef_rows(0, 6, 2, 32)
    g[1, 0, 3] = np.nan
    g[4, 1, 0] = np.inf
    writer = create_store(tmp_path / "s", rank=2, dim=32, projection=SSP, shard_examples=4,
                          chunk_examples=1)
    writer.append(g)
    store = writer.finalize()
    status = store.examples.column("status").to_pylist()
    assert status == ["ok", "non-finite", "ok", "ok", "non-finite", "ok"]
    data = store.read()
    assert np.isfinite(data).all()
    assert not data[1].any() and not data[4].any()
    np.testing.assert_array_equal(data[[0, 2, 3, 5]], g[[0, 2, 3, 5]])


def test_float16_overflow_is_flagged(tmp_path):
    g = pef_rows(0, 2, 1, 32)
    g[0, 0, 0] = 1e6  # not representable in float16
    writer = create_store(tmp_path / "s", rank=1, dim=32, projection=SSP, dtype="float16")
    writer.append(g)
    assert writer.finalize().examples.column("status").to_pylist() == ["non-finite", "ok"]


def test_default_shards_are_tens_of_megabytes():
    shard, chunk = default_layout(8, 8192, "float32")
    assert shard % chunk == 0
    assert 64 << 20 <= shard * 8 * 8192 * 4 <= 160 << 20
    assert default_layout(64, 65536, "float32") == (8, 1)  # 16 MiB examples: small shards


def test_context_manager_finalizes(tmp_path):
    with create_store(tmp_path / "s", rank=1, dim=32, projection=SSP) as writer:
        writer.append(pef_rows(0, 3, 1, 32))
    assert open_store(tmp_path / "s").status == "finalized"


def test_empty_store(tmp_path):
    store = create_store(tmp_path / "s", rank=2, dim=32, projection=SSP).finalize()
    assert store.num_examples == 0 and store.read().shape == (0, 2, 32)
    assert store.examples.num_rows == 0 and list(store.iter_chunks()) == []
    assert store.to_dask().shape == (0, 2, 32)


def test_pickle_and_dask_graph_pickle(tmp_path):
    store = build(tmp_path / "s", 9, 2, 32)
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.read(2, 7), store.read(2, 7))
    graph = pickle.loads(pickle.dumps(store.to_dask()))
    np.testing.assert_array_equal(graph.compute(scheduler="sync"), store.read())
    assert graph.numblocks == (2, 1, 1)


def test_resume_with_different_arguments_shows_both(tmp_path):
    writer = create_store(tmp_path / "s", rank=2, dim=32, projection=SSP, shard_examples=4,
                          chunk_examples=1)
    writer.append(pef_rows(0, 5, 2, 32))
    with pytest.raises(StoreExistsError) as info:
        create_store(tmp_path / "s", rank=3, dim=32, projection={"kind": "ssp-v1", "seed": 4},
                     shard_examples=4, chunk_examples=1, resume=True)
    message = str(info.value)
    assert "rank: existing 2  vs  requested 3" in message
    assert '"seed":3' in message and '"seed":4' in message and "--overwrite" in message


def test_existing_store_needs_resume_or_overwrite(tmp_path):
    build(tmp_path / "s", 3, 1, 32)
    with pytest.raises(StoreExistsError, match="already exists"):
        create_store(tmp_path / "s", rank=1, dim=32, projection=SSP, shard_examples=5, chunk_examples=1)
    with pytest.raises(StoreExistsError, match="already finalized"):
        create_store(tmp_path / "s", rank=1, dim=32, projection=SSP, shard_examples=5,
                     chunk_examples=1, resume=True)
    fresh = create_store(tmp_path / "s", rank=2, dim=64, projection=SSP, overwrite=True).finalize()
    assert (fresh.rank, fresh.dim, fresh.num_examples) == (2, 64, 0)


def test_refuses_foreign_directories(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_text("meow")
    for overwrite in (False, True):
        with pytest.raises(StoreExistsError, match="not an npeff store"):
            create_store(foreign, rank=1, dim=32, projection=SSP, overwrite=overwrite)
    assert (foreign / "cat.jpg").read_text() == "meow"
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreExistsError, match="is a file"):
        create_store(tmp_path / "file", rank=1, dim=32, projection=SSP)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"rank": 0}, "rank must be an integer >= 1"),
        ({"dim": 33}, "multiple of 32"),
        ({"dtype": "bfloat16"}, "storage dtype"),
        ({"kind": "hessian"}, "store kind"),
        ({"kind": "gradient", "rank": 2}, "gradient store has rank 1"),
        ({"projection": {"kind": "ssp-v2"}}, "unknown projection kind"),
        ({"projection": {"kind": "ssp-v1", "seed": 1, "d": 64}}, "differs from the store's dim"),
        ({"projection": "ssp"}, "projection must be"),
        ({"projection": {"kind": "external", "seed": 1}}, "takes no other fields"),
        ({"shard_examples": 6, "chunk_examples": 4}, "multiple of chunk_examples"),
        ({"pef_spec": {"f": object()}}, "JSON-serialisable"),
    ],
)
def test_bad_creation_arguments(tmp_path, kwargs, match):
    arguments = {"rank": 1, "dim": 32, "projection": SSP, **kwargs}
    with pytest.raises(InvalidArgumentError, match=match):
        create_store(tmp_path / "s", **arguments)
    assert not (tmp_path / "s").exists()  # nothing half-created


def test_bad_appends(tmp_path):
    writer = create_store(tmp_path / "s", rank=2, dim=32, projection=SSP)
    with pytest.raises(InvalidArgumentError, match=r"shape \[k, rank=2, dim=32\], got \[3, 2, 64\]"):
        writer.append(np.zeros((3, 2, 64), np.float32))
    with pytest.raises(InvalidArgumentError, match="floating point"):
        writer.append(np.zeros((3, 2, 32), np.int32))
    with pytest.raises(InvalidArgumentError, match="numpy array or torch tensor"):
        writer.append([[0.0]])
    with pytest.raises(InvalidArgumentError, match="2 example records for 3 PEFs"):
        writer.append(np.zeros((3, 2, 32), np.float32), [{}, {}])
    with pytest.raises(InvalidArgumentError, match="unknown fields"):
        writer.append(np.zeros((1, 2, 32), np.float32), [{"colour": "red"}])
    with pytest.raises(InvalidArgumentError, match="status must be one of"):
        writer.append(np.zeros((1, 2, 32), np.float32), [{"status": "fine"}])
    with pytest.raises(InvalidArgumentError, match="rank must be an integer in"):
        writer.append(np.zeros((1, 2, 32), np.float32), [{"rank": 5}])
    with pytest.raises(InvalidArgumentError, match="do not fit the table schema"):
        writer.append(np.zeros((1, 2, 32), np.float32), [{"label": "positive"}])
    assert writer.num_buffered == 0  # rejected appends left nothing behind
    writer.append(np.zeros((1, 2, 32), np.float32), pa.Table.from_pylist([{"text": "ok"}]))
    writer.finalize()
    with pytest.raises(InvalidArgumentError, match="finalized"):
        writer.append(np.zeros((1, 2, 32), np.float32))


def test_bad_opens_and_reads(tmp_path):
    with pytest.raises(StoreNotFoundError, match="does not exist"):
        open_store(tmp_path / "missing")
    assert issubclass(StoreNotFoundError, FileNotFoundError)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreNotFoundError, match="has no manifest.json"):
        open_store(tmp_path / "empty")
    store = build(tmp_path / "s", 4, 1, 32)
    with pytest.raises(InvalidArgumentError, match=r"cannot read examples \[2, 9\)"):
        store.read(2, 9)
    with pytest.raises(InvalidArgumentError, match="start must be an integer"):
        store.read(1.5, 3)
    (tmp_path / "s" / "manifest.json").write_text("{not json")
    with pytest.raises(StoreCorruptError, match="not valid JSON"):
        open_store(tmp_path / "s")
    (tmp_path / "s" / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(StoreCorruptError, match="not an npeff PEF store manifest"):
        open_store(tmp_path / "s")
    assert issubclass(StoreCorruptError, NpeffError)


def _flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


def test_checked_read_names_the_corrupt_shard(tmp_path):
    store = build(tmp_path / "s", 12, 2, 32, shard=4, chunk=2)
    _flip_byte(shard_data_path(tmp_path / "s", 1), 200)
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


def test_large_finite_values_are_not_flagged(tmp_path):
    g = pef_rows(0, 2, 1, 32) * 1e25  # squares overflow float32, values are finite
    writer = create_store(tmp_path / "s", rank=1, dim=32, projection=SSP)
    writer.append(g)
    store = writer.finalize()
    assert store.examples.column("status").to_pylist() == ["ok", "ok"]
    np.testing.assert_array_equal(store.read(), g)
