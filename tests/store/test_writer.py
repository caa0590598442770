"""Writing PEF stores: the manifest, NaN and overflow handling, torch inputs, existing outputs and
bad arguments or appends."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from npeff.cuda_ops import ProjectionSpec
from npeff.errors import InvalidArgumentError, StoreExistsError
from npeff.store import ParameterLayout, create_store, open_store
from tests.store.helpers import SSP, build, pef_rows


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
    assert not (tmp_path / "s" / "progress.json").exists()  # a finalized store needs no progress record


def test_default_sizes_fill_in_what_is_not_given(tmp_path):
    default = create_store(tmp_path / "a", rank=8, dim=8192, projection=SSP).config
    assert (default.shard_examples, default.chunk_examples) == (512, 16)  # 128 MiB of 4 MiB chunks
    assert create_store(tmp_path / "b", rank=8, dim=8192, projection=SSP,
                        shard_examples=8).config.chunk_examples == 8
    assert create_store(tmp_path / "c", rank=8, dim=8192, projection=SSP, shard_examples=20).config.chunk_examples == 1
    assert create_store(tmp_path / "d", rank=8, dim=8192, projection=SSP, chunk_examples=10).config.shard_examples == 510


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


def test_large_finite_values_are_not_flagged(tmp_path):
    g = pef_rows(0, 2, 1, 32) * 1e25  # squares overflow float32, values are finite
    writer = create_store(tmp_path / "s", rank=1, dim=32, projection=SSP)
    writer.append(g)
    store = writer.finalize()
    assert store.examples.column("status").to_pylist() == ["ok", "ok"]
    np.testing.assert_array_equal(store.read(), g)


def test_context_manager_finalizes(tmp_path):
    with create_store(tmp_path / "s", rank=1, dim=32, projection=SSP) as writer:
        writer.append(pef_rows(0, 3, 1, 32))
    assert open_store(tmp_path / "s").status == "finalized"


def test_context_manager_does_not_finalize_after_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="interrupted"):
        with create_store(tmp_path / "s", rank=1, dim=32, projection=SSP) as writer:
            writer.append(pef_rows(0, 3, 1, 32))
            raise RuntimeError("interrupted")
    assert open_store(tmp_path / "s").status == "building"


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


@pytest.mark.parametrize("resume,match", [(False, "already exists .*(--resume).*(--overwrite)"),
                                          (True, "already finalized; nothing to resume")])
def test_existing_store_needs_resume_or_overwrite(tmp_path, resume, match):
    build(tmp_path / "s", 3, 1, 32)
    with pytest.raises(StoreExistsError, match=match):
        create_store(tmp_path / "s", rank=1, dim=32, projection=SSP, shard_examples=5, chunk_examples=1,
                     resume=resume)
    assert open_store(tmp_path / "s").num_examples == 3


def test_overwrite_replaces_a_store(tmp_path):
    build(tmp_path / "s", 3, 1, 32)
    fresh = create_store(tmp_path / "s", rank=2, dim=64, projection=SSP, overwrite=True).finalize()
    assert (fresh.rank, fresh.dim, fresh.num_examples) == (2, 64, 0)
    assert not list((tmp_path / "s" / "examples").iterdir())


def test_an_empty_directory_takes_a_store(tmp_path):
    (tmp_path / "s").mkdir()
    writer = create_store(tmp_path / "s", rank=1, dim=32, projection=SSP)
    writer.append(pef_rows(0, 2, 1, 32))
    assert writer.finalize().num_examples == 2


@pytest.mark.parametrize("overwrite", [False, True])
def test_refuses_foreign_directories(tmp_path, overwrite):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_text("meow")
    with pytest.raises(StoreExistsError, match="not an npeff store"):
        create_store(foreign, rank=1, dim=32, projection=SSP, overwrite=overwrite)
    assert (foreign / "cat.jpg").read_text() == "meow"


@pytest.mark.parametrize("overwrite", [False, True])
def test_refuses_a_file(tmp_path, overwrite):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreExistsError, match="is a file"):
        create_store(tmp_path / "file", rank=1, dim=32, projection=SSP, overwrite=overwrite)
    assert (tmp_path / "file").read_text() == "x"


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


ZEROS = np.zeros((1, 2, 32), np.float32)


@pytest.mark.parametrize(
    "G,examples,match",
    [
        (np.zeros((3, 2, 64), np.float32), None, r"shape \[k, rank=2, dim=32\], got \[3, 2, 64\]"),
        (np.zeros((2, 32), np.float32), None, r"shape \[k, rank=2, dim=32\], got \[2, 32\]"),
        (np.zeros((3, 2, 32), np.int32), None, "floating point"),
        ([[0.0]], None, "numpy array or torch tensor"),
        (np.zeros((3, 2, 32), np.float32), [{}, {}], "2 example records for 3 PEFs"),
        (ZEROS, [{"colour": "red"}], "unknown fields"),
        (ZEROS, [{"status": "fine"}], "status must be one of"),
        (ZEROS, [{"rank": 5}], "rank must be an integer in"),
        (ZEROS, [{"label": "positive"}], "do not fit the table schema"),
    ],
)
def test_bad_appends_leave_nothing_behind(tmp_path, G, examples, match):
    writer = create_store(tmp_path / "s", rank=2, dim=32, projection=SSP)
    with pytest.raises(InvalidArgumentError, match=match):
        writer.append(G, examples)
    assert writer.num_buffered == 0
    writer.append(ZEROS, pa.Table.from_pylist([{"text": "ok"}]))
    store = writer.finalize()
    assert store.num_examples == 1 and store.examples.column("text").to_pylist() == ["ok"]


def test_a_finalized_writer_takes_no_more_examples(tmp_path):
    writer = create_store(tmp_path / "s", rank=2, dim=32, projection=SSP)
    writer.finalize()
    with pytest.raises(InvalidArgumentError, match="finalized"):
        writer.append(ZEROS)
    assert writer.finalize().num_examples == 0  # finalizing again just reopens it
