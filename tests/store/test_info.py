"""Describing stores: the JSON-able summary and its text rendering."""

from dask.utils import format_bytes

from npeff.store import format_info, merge_stores, store_info
from tests.store.helpers import piece


def test_info_describes_the_store(tmp_path):
    store = piece(tmp_path / "s", 0, 10, pef_spec={"formulation": "label-tokens"})
    info = store_info(store)
    assert (info["num_examples"], info["rank"], info["dim"], info["num_shards"]) == (10, 2, 32, 3)
    assert info["size_on_disk"] > 10 * 2 * 32 * 4
    assert info["parameter_layout"]["n_total"] == 36
    assert info["fingerprint"] == store.fingerprint
    assert info["example_status"] == {"ok": 10}
    assert info["pef_spec"] == {"formulation": "label-tokens"} and info["model"] is None


def facts(text: str) -> dict:
    """``label: value`` of each line, where every value starts after the longest label and two spaces."""
    width = len("fingerprint")
    return {line[:width].rstrip(): line[width + 2:] for line in text.splitlines()}


def test_text_has_one_aligned_line_per_fact(tmp_path):
    store = piece(tmp_path / "s", 0, 10, pef_spec={"formulation": "label-tokens"})
    info = store_info(store)
    lines = facts(format_info(info))
    assert lines["store"] == f"{store.path} (finalized)"
    assert lines["shape"] == "m = 10 examples, r = 2, d = 32, float32"
    assert lines["shards"] == "3 of up to 4 examples (checked chunks of 2)"
    assert lines["on disk"] == format_bytes(info["size_on_disk"])
    assert lines["projection"] == "ssp-v1 (seed 5, d 32, region size 1)"
    assert lines["parameters"] == "2 tensors, n = 36"
    assert lines["model"] == "not recorded"
    assert lines["pef spec"] == '{"formulation":"label-tokens"}'
    assert lines["examples"] == "ok: 10"
    assert lines["fingerprint"] == store.fingerprint


def test_sizes_are_shown_in_binary_units(tmp_path):
    info = dict(store_info(piece(tmp_path / "s", 0, 4)), size_on_disk=3 * 2**20 + 2**19)
    assert "3.50 MiB" in format_info(info)


def test_a_merged_store_names_its_sources(tmp_path):
    first, second = piece(tmp_path / "a", 0, 3), piece(tmp_path / "b", 3, 6)
    merged = merge_stores(tmp_path / "m", [first.path, second.path])
    assert facts(format_info(store_info(merged)))["merged from"] == f"{first.path}, {second.path}"
