"""The store as the shareable dataset: the zarr root group and dimension names (xarray and zarr
open a store as it is), ``PefStore.to_xarray``, ``npeff upgrade`` for stores of earlier versions,
and the dataset card."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from huggingface_hub import DatasetCard

from npeff.errors import InvalidArgumentError
from npeff.store import create_store, open_store, verify_store
from npeff.store.card import write_card
from npeff.store.upgrade import upgrade_store
from tests.store.helpers import build, example_records, pef_rows

OLD_STORE = Path(__file__).parents[1] / "data" / "v0.1.0" / "store"


def test_xarray_and_zarr_open_a_new_store(tmp_path):
    import xarray
    import zarr

    store = build(tmp_path / "s", 13, 2, 32, shard=5, chunk=1)
    dataset = xarray.open_zarr(tmp_path / "s")  # consolidated: no listing of the non-zarr files
    assert dataset.pefs.dims == ("example", "row", "feature")
    np.testing.assert_array_equal(dataset.pefs.values, store.read())
    assert dataset.attrs["npeff"]["fingerprint"] == store.fingerprint
    group = zarr.open_group(tmp_path / "s", mode="r")
    np.testing.assert_array_equal(group["pefs"][3:7], store.read(3, 7))


def test_a_store_being_built_is_a_zarr_group(tmp_path):
    import zarr

    writer = create_store(tmp_path / "s", rank=2, dim=32, projection={"kind": "external"}, shard_examples=2,
                          chunk_examples=1)
    writer.append(pef_rows(0, 3, 2, 32), example_records(0, 3))
    assert zarr.open_group(tmp_path / "s", mode="r").attrs["npeff"]["kind"] == "lrm-pef"
    writer.finalize()


def test_to_xarray_carries_the_table(tmp_path):
    store = build(tmp_path / "s", 9, 2, 32, shard=4)
    dataset = store.to_xarray()
    np.testing.assert_array_equal(dataset.pefs.sel(example=slice(2, 4)).values, store.read(2, 5))
    table = store.examples
    assert list(dataset.text.values) == table.column("text").to_pylist()
    assert list(dataset.label.values) == table.column("label").to_pylist()
    assert list(dataset.status.values) == ["ok"] * 9
    np.testing.assert_array_equal(dataset.example.values, np.arange(9))
    assert dataset.attrs["content_id"] == store.content_id


def test_upgrade_makes_an_old_store_open_in_xarray(tmp_path):
    import xarray

    shutil.copytree(OLD_STORE, tmp_path / "old")
    before = open_store(tmp_path / "old")
    with pytest.raises(FileNotFoundError, match="No group found"):  # zarr's GroupNotFoundError
        xarray.open_zarr(tmp_path / "old", consolidated=False)
    changes = upgrade_store(tmp_path / "old")
    assert [c.split(":")[0] for c in changes] == ["pefs/zarr.json", "manifest.json", "zarr.json"]
    assert open_store(tmp_path / "old").store_manifest.tensor_metadata_checksum is not None
    dataset = xarray.open_zarr(tmp_path / "old")
    np.testing.assert_array_equal(dataset.pefs.values, before.read())
    after = open_store(tmp_path / "old")
    assert after.content_id == before.content_id and verify_store(after.path).ok
    assert upgrade_store(tmp_path / "old") == []


@pytest.mark.parametrize("name", ['evil": name', "a\n---\nb: [", "ünïcode '' #x"])
def test_card_yaml_parses_for_hostile_names(tmp_path, name):
    store = build(tmp_path / "s", 6, 2, 32)
    card = write_card(tmp_path / "s", name=name).read_text(encoding="utf-8")
    front = yaml.safe_load(card.removeprefix("---\n").split("\n---\n")[0])
    assert front["pretty_name"] == f"{name}: NPEFF lrm-pef store"
    assert DatasetCard(card).data.pretty_name == front["pretty_name"]  # as the Hub reads it
    assert front["npeff"]["fingerprint"] == store.fingerprint and front["npeff"]["num_examples"] == 6
    assert verify_store(tmp_path / "s").notes == []  # the card belongs to the store


def test_datasets_loads_the_table_through_the_card(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    store = build(tmp_path / "s", 11, 2, 32, shard=4)
    write_card(tmp_path / "s")
    table = datasets.load_dataset(str(tmp_path / "s"), split="train")
    assert table["text"] == store.examples.column("text").to_pylist()


def test_card_refuses_a_store_being_built(tmp_path):
    writer = create_store(tmp_path / "s", rank=1, dim=32, projection={"kind": "external"}, kind="gradient")
    with pytest.raises(InvalidArgumentError, match="still being built"):
        write_card(tmp_path / "s")
    writer.finalize()
