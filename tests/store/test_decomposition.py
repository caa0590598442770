"""Decomposition directories: the manifest dataclass, opening, and the output directory's rules."""

import json

import numpy as np
import pytest

from npeff.errors import StoreCorruptError, StoreExistsError, StoreNotFoundError
from npeff.store.decomposition import (DecompositionManifest, open_decomposition, prepare_decomposition_dir,
                                       write_decomposition)

MANIFEST = DecompositionManifest(n_components=2, num_examples=3, dim=4, config={"n_components": 2},
                                 store="s", store_fingerprint="abc", provenance={"command": "npeff decompose"})


def written(path):
    path.mkdir()
    write_decomposition(path, W=np.ones((3, 2)), H=np.eye(2, 4), losses=np.array([2.0, 1.0]), manifest=MANIFEST)
    return path


def test_manifest_round_trip_and_format_fields():
    data = MANIFEST.to_dict()
    assert data["format"] == "npeff-decomposition" and data["format_version"] == 1 and data["kind"] == "decomposition"
    assert DecompositionManifest.from_dict(data) == MANIFEST
    assert DecompositionManifest.from_dict(dict(data, unknown_later_field=1)) == MANIFEST  # newer writers add fields


@pytest.mark.parametrize("change, message", [
    (dict(format="npeff-pef-store"), "not an npeff decomposition manifest"),
    (dict(format_version=2), "format version 2"),
    (dict(store_fingerprint=None, store=None), None),
], ids=["format", "version", "optional-fields"])
def test_manifest_errors(change, message):
    data = dict(MANIFEST.to_dict(), **change)
    if message is None:
        assert DecompositionManifest.from_dict(data).store_fingerprint is None
    else:
        with pytest.raises(StoreCorruptError, match=message):
            DecompositionManifest.from_dict(data)


def test_an_incomplete_manifest_is_corrupt():
    data = MANIFEST.to_dict()
    del data["dim"]
    with pytest.raises(StoreCorruptError, match="incomplete"):
        DecompositionManifest.from_dict(data)


def test_open_reads_what_was_written(tmp_path):
    decomposition = open_decomposition(written(tmp_path / "d"))
    assert decomposition.meta == MANIFEST and decomposition.manifest == MANIFEST.to_dict()
    data = dict(MANIFEST.to_dict(), added_by_a_later_version=[1, 2])
    (tmp_path / "d" / "manifest.json").write_text(json.dumps(data))
    assert open_decomposition(tmp_path / "d").manifest["added_by_a_later_version"] == [1, 2]
    np.testing.assert_array_equal(decomposition.W, np.ones((3, 2)))
    np.testing.assert_array_equal(decomposition.losses, [2.0, 1.0])
    assert decomposition.config == {"n_components": 2}
    assert not list((tmp_path / "d").glob("*.partial")) and not list((tmp_path / "d").glob(".*"))


@pytest.mark.parametrize("damage, error, message", [
    (lambda p: (p / "manifest.json").unlink(), StoreNotFoundError, "has no manifest.json"),
    (lambda p: (p / "manifest.json").write_text("{not json"), StoreCorruptError, "not valid JSON"),
    (lambda p: (p / "manifest.json").write_text(json.dumps([1])), StoreCorruptError, "JSON object"),
    (lambda p: (p / "H.npy").unlink(), StoreCorruptError, "H.npy is missing"),
    (lambda p: (p / "H.npy").write_bytes(b"\x93NUMPY garbage"), StoreCorruptError, "not a readable .npy"),
], ids=["no-manifest", "bad-json", "not-an-object", "no-H", "bad-H"])
def test_damaged_decompositions_are_named(tmp_path, damage, error, message):
    path = written(tmp_path / "d")
    damage(path)
    with pytest.raises(error, match=message):
        open_decomposition(path).H


def test_a_missing_path(tmp_path):
    with pytest.raises(StoreNotFoundError, match="no decomposition at"):
        open_decomposition(tmp_path / "nowhere")


def test_output_directory_rules(tmp_path):
    fresh = prepare_decomposition_dir(tmp_path / "new", overwrite=False)
    assert fresh.is_dir()
    interrupted = tmp_path / "interrupted"
    (interrupted / "checkpoint").mkdir(parents=True)
    (interrupted / "checkpoint" / "state.npz").write_bytes(b"x")
    (interrupted / ".W.npy.0123.partial").write_bytes(b"left by a killed write")
    prepare_decomposition_dir(interrupted, overwrite=False)  # kept: resumed, or replaced step by step
    assert (interrupted / "checkpoint" / "state.npz").is_file()
    assert not (interrupted / ".W.npy.0123.partial").exists()
    done = written(tmp_path / "done")
    with pytest.raises(StoreExistsError, match="already exists"):
        prepare_decomposition_dir(done, overwrite=False)
    prepare_decomposition_dir(done, overwrite=True)
    assert not any(done.iterdir())


@pytest.mark.parametrize("manifest", [None, {"format": "npeff-pef-store", "format_version": 1}, "not json"],
                         ids=["no-manifest", "a-store", "bad-json"])
def test_other_directories_are_never_replaced(tmp_path, manifest):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    if manifest is not None:
        (foreign / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    with pytest.raises(StoreExistsError, match="not an npeff decomposition"):
        prepare_decomposition_dir(foreign, overwrite=True)
    assert (foreign / "mine.txt").read_text() == "keep"
