"""Hugging Face export: loads with ``datasets`` and TensorStore, never half-written, never clobbers."""

import json

import numpy as np
import pytest

from npeff.errors import InvalidArgumentError, StoreExistsError
from npeff.store import create_store, export_hf
from tests.store.helpers import pef_rows, piece


def test_hf_export_loads_with_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    import datasets

    store = piece(tmp_path / "s", 0, 10)
    out = export_hf(store.path, tmp_path / "export")
    loaded = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train",
                                   cache_dir=str(tmp_path / "cache"))
    assert loaded.num_rows == 10
    assert loaded["text"] == [f"example {i}" for i in range(10)]
    by_card = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache2"))
    assert by_card.num_rows == 10
    card = (out / "README.md").read_text()
    assert card.startswith("---\nconfigs:") and store.fingerprint in card
    import tensorstore as ts

    tensor = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(out / "pefs")}}).result()
    np.testing.assert_array_equal(tensor.read().result(), pef_rows(0, 10, 2, 32))
    assert json.loads((out / "npeff_manifest.json").read_text())["fingerprint"] == store.fingerprint


def test_an_earlier_export_needs_overwrite(tmp_path):
    first, second = piece(tmp_path / "a", 0, 4), piece(tmp_path / "b", 0, 8)
    out = export_hf(first.path, tmp_path / "export")
    with pytest.raises(StoreExistsError, match="already exists at .*; pass --overwrite"):
        export_hf(second.path, out)
    assert len(list((out / "data").iterdir())) == 1
    export_hf(second.path, out, overwrite=True)
    assert len(list((out / "data").iterdir())) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "export"]  # no staging left


def test_an_empty_directory_takes_an_export(tmp_path):
    (tmp_path / "export").mkdir()
    out = export_hf(piece(tmp_path / "s", 0, 4).path, tmp_path / "export")
    assert (out / "README.md").is_file()


def _file(path):
    path.write_text("x")


def _foreign_directory(path):
    path.mkdir()
    path.joinpath("x").write_text("x")


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("make,match", [(_file, "is a file"), (_foreign_directory, "not an npeff dataset export")])
def test_refuses_what_is_not_an_export(tmp_path, make, match, overwrite):
    store = piece(tmp_path / "s", 0, 4)
    make(tmp_path / "out")
    before = _contents(tmp_path / "out")
    with pytest.raises(StoreExistsError, match=match):
        export_hf(store.path, tmp_path / "out", overwrite=overwrite)
    assert _contents(tmp_path / "out") == before


def _contents(path):
    return path.read_text() if path.is_file() else {p.name: p.read_text() for p in path.iterdir()}


def test_refuses_a_store_being_built(tmp_path):
    writer = create_store(tmp_path / "s", rank=1, dim=32, projection={"kind": "external"})
    writer.append(pef_rows(0, 1, 1, 32))
    with pytest.raises(InvalidArgumentError, match="still being built"):
        export_hf(tmp_path / "s", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failed_export_keeps_the_earlier_one(tmp_path, monkeypatch):
    store = piece(tmp_path / "s", 0, 4)
    out = export_hf(store.path, tmp_path / "export")
    card = (out / "README.md").read_text()

    def broken_card(_store):
        raise OSError("disk full")

    monkeypatch.setattr("npeff.store.export.dataset_card", broken_card)
    with pytest.raises(OSError, match="disk full"):
        export_hf(store.path, out, overwrite=True)
    assert (out / "README.md").read_text() == card
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export", "s"]
