"""Merging stores: concatenation of compatible pieces, refusals with the differences shown, and
outputs that are never left half-written or clobbered unasked."""

import numpy as np
import pytest

from npeff.errors import IncompatibleStoresError, InvalidArgumentError, StoreCorruptError, StoreExistsError
from npeff.store import ParameterLayout, create_store, merge_stores, open_store, verify_store
from npeff.store._layout import shard_data_path
from npeff.store.merge import check_compatible
from tests.store.helpers import LAYOUT, flip_byte, pef_rows, piece


def test_merge_of_parallel_pieces(tmp_path):
    first, second = piece(tmp_path / "a", 0, 7), piece(tmp_path / "b", 7, 16)
    merged = merge_stores(tmp_path / "m", [first.path, second.path], command="npeff merge")
    assert merged.num_examples == 16 and merged.fingerprint == first.fingerprint
    np.testing.assert_array_equal(merged.read(), pef_rows(0, 16, 2, 32))
    table = merged.examples
    assert table.column("example_index").to_pylist() == list(range(16))
    assert table.column("source_id").to_pylist() == [f"src-{i}" for i in range(16)]
    assert table.column("text").to_pylist()[7] == "example 7"
    sources = merged.manifest["provenance"]["merged_from"]
    assert [s["num_examples"] for s in sources] == [7, 9]
    assert merged.manifest["provenance"]["command"] == "npeff merge"
    assert verify_store(merged.path).ok


@pytest.mark.parametrize(
    "options,match",
    [
        ({"projection": {"kind": "ssp-v1", "seed": 6}}, r'differ in projection:\n.*"seed":5.*\n.*"seed":6'),
        ({"parameter_layout": ParameterLayout.from_shapes([("w", (36,))])}, "differ in parameter_layout"),
        ({"pef_spec": {"eps": 2}}, "differ in pef_spec"),
        ({"dtype": "float16"}, "differ in dtype"),
    ],
)
def test_merge_refuses_incompatible_stores(tmp_path, options, match):
    base, other = piece(tmp_path / "a", 0, 4), piece(tmp_path / "b", 4, 8, **options)
    with pytest.raises(IncompatibleStoresError, match=match):
        merge_stores(tmp_path / "m", [base.path, other.path])
    assert not (tmp_path / "m").exists()


def test_compatibility_names_both_stores_and_fingerprints(tmp_path):
    base, other = piece(tmp_path / "a", 0, 4), piece(tmp_path / "b", 4, 8, projection={"kind": "ssp-v1", "seed": 6})
    with pytest.raises(IncompatibleStoresError) as info:
        check_compatible([base, base, other])
    message = str(info.value)
    assert f"stores {base.path} and {other.path} are not compatible" in message
    assert base.fingerprint in message and other.fingerprint in message
    check_compatible([base, piece(tmp_path / "c", 4, 8)])  # equal arguments: no error


def _building_store(root):
    writer = create_store(root / "d", rank=2, dim=32, projection={"kind": "ssp-v1", "seed": 5},
                          parameter_layout=LAYOUT)
    writer.append(pef_rows(0, 1, 2, 32))
    return root / "d"


@pytest.mark.parametrize(
    "out,inputs,match",
    [
        ("m", [], "at least one input store"),
        ("a", ["a"], "is the input"),
        ("m", ["a", _building_store], "still being built"),
    ],
)
def test_bad_merge_arguments(tmp_path, out, inputs, match):
    piece(tmp_path / "a", 0, 4)
    paths = [tmp_path / p if isinstance(p, str) else p(tmp_path) for p in inputs]
    with pytest.raises(InvalidArgumentError, match=match):
        merge_stores(tmp_path / out, paths)
    assert not (tmp_path / "m").exists()


def test_failed_merge_leaves_nothing(tmp_path):
    first, second = piece(tmp_path / "a", 0, 8), piece(tmp_path / "b", 8, 16)
    flip_byte(shard_data_path(second.path, 1), 40, 1)
    with pytest.raises(StoreCorruptError, match="shard 1"):
        merge_stores(tmp_path / "m", [first.path, second.path])
    assert not (tmp_path / "m").exists()


def test_an_existing_output_store_needs_overwrite(tmp_path):
    first, second = piece(tmp_path / "a", 0, 4), piece(tmp_path / "b", 4, 8)
    merge_stores(tmp_path / "m", [first.path])
    with pytest.raises(StoreExistsError, match="a store already exists at .*; pass --overwrite"):
        merge_stores(tmp_path / "m", [first.path, second.path])
    assert open_store(tmp_path / "m").num_examples == 4
    assert merge_stores(tmp_path / "m", [first.path, second.path], overwrite=True).num_examples == 8


@pytest.mark.parametrize("overwrite", [False, True])
def test_merge_refuses_a_foreign_output(tmp_path, overwrite):
    first = piece(tmp_path / "a", 0, 4)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("mine")
    with pytest.raises(StoreExistsError, match="not an npeff store"):
        merge_stores(tmp_path / "m", [first.path], overwrite=overwrite)
    assert (tmp_path / "m" / "keep.txt").read_text() == "mine"



def test_merge_of_no_stores_is_refused(tmp_path):
    with pytest.raises(InvalidArgumentError, match="at least one input store"):
        merge_stores(tmp_path / "m", (path for path in ()))
    assert not (tmp_path / "m").exists()
