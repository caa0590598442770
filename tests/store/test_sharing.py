"""Sharing stores: info, verify, merge, HF export, and the CLI commands over them."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from npeff.cli.main import cli
from npeff.errors import IncompatibleStoresError, InvalidArgumentError, StoreExistsError
from npeff.store import ParameterLayout, create_store, open_store
from npeff.store._layout import shard_data_path, shard_table_path
from npeff.store import export_hf, merge_stores, store_info, verify_store
from tests.store.helpers import example_records, pef_rows
from tests.store.test_pef_store import build

LAYOUT = ParameterLayout.from_shapes([("w", (8, 4)), ("b", (4,))])


def piece(path, start, stop, **kwargs):
    """A store of examples [start, stop), as one machine of a parallel build would write it."""
    options = {"projection": {"kind": "ssp-v1", "seed": 5}, "parameter_layout": LAYOUT, **kwargs}
    writer = create_store(path, rank=2, dim=32, shard_examples=4, chunk_examples=2, **options)
    writer.append(pef_rows(start, stop, 2, 32), example_records(start, stop))
    return writer.finalize()


def test_info_describes_the_store(tmp_path):
    store = piece(tmp_path / "s", 0, 10, pef_spec={"formulation": "label-tokens"})
    info = store_info(store)
    assert (info["num_examples"], info["rank"], info["dim"], info["num_shards"]) == (10, 2, 32, 3)
    assert info["size_on_disk"] > 10 * 2 * 32 * 4
    assert info["parameter_layout"]["n_total"] == 36
    assert info["fingerprint"] == store.fingerprint
    assert info["example_status"] == {"ok": 10}


def test_fingerprint_is_projection_and_layout():
    a = piece_config(seed=5)
    assert a.fingerprint() == piece_config(seed=5, pef_spec={"x": 1}).fingerprint()
    assert a.fingerprint() != piece_config(seed=6).fingerprint()
    assert a.fingerprint() != piece_config(seed=5, layout=ParameterLayout.from_shapes([("w", (36,))])).fingerprint()


def piece_config(seed, pef_spec=None, layout=LAYOUT):
    from npeff.store import StoreConfig

    return StoreConfig(kind="lrm-pef", rank=2, dim=32, dtype="float32",
                       projection={"kind": "ssp-v1", "seed": seed}, shard_examples=4,
                       chunk_examples=2, parameter_layout=layout, pef_spec=pef_spec)


def test_verify_passes_and_names_bad_shards(tmp_path):
    build(tmp_path / "s", 12, 2, 32, shard=4, chunk=2)
    assert verify_store(tmp_path / "s").ok
    data = shard_data_path(tmp_path / "s", 2)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 1
    data.write_bytes(bytes(raw))
    table = shard_table_path(tmp_path / "s", 0)
    table.write_bytes(table.read_bytes()[:-10] + b"0123456789")
    report = verify_store(tmp_path / "s")
    assert not report.ok and len(report.problems) == 2
    assert any(p.startswith("shard 2 (examples 8-11): data file pefs/c/2/0/0 fails its checksum")
               for p in report.problems)
    assert any(p.startswith("shard 0 (examples 0-3): table part") for p in report.problems)


def test_verify_reports_missing_files_and_building_stores(tmp_path):
    writer = create_store(tmp_path / "s", rank=1, dim=32, projection={"kind": "external"},
                          shard_examples=2, chunk_examples=1)
    writer.append(pef_rows(0, 5, 1, 32))
    writer._commit_pending()  # the second shard's write completes (as the next append would see)
    report = verify_store(tmp_path / "s")
    assert report.ok and report.status == "building" and report.num_examples == 4
    shard_table_path(tmp_path / "s", 1).unlink()
    assert verify_store(tmp_path / "s").problems == [
        "shard 1 (examples 2-3): table part examples/part-000001.parquet is missing"]


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
    assert verify_store(merged.path).ok


def test_merge_refuses_incompatible_stores(tmp_path):
    base = piece(tmp_path / "a", 0, 4)
    other_seed = piece(tmp_path / "b", 4, 8, projection={"kind": "ssp-v1", "seed": 6})
    with pytest.raises(IncompatibleStoresError, match="differ in projection") as info:
        merge_stores(tmp_path / "m", [base.path, other_seed.path])
    assert '"seed":5' in str(info.value) and '"seed":6' in str(info.value)
    other_layout = piece(tmp_path / "c", 4, 8,
                         parameter_layout=ParameterLayout.from_shapes([("w", (36,))]))
    with pytest.raises(IncompatibleStoresError, match="parameter_layout"):
        merge_stores(tmp_path / "m", [base.path, other_layout.path])
    assert not (tmp_path / "m").exists()
    building = create_store(tmp_path / "d", rank=2, dim=32, projection={"kind": "ssp-v1", "seed": 5},
                            parameter_layout=LAYOUT)
    building.append(pef_rows(0, 1, 2, 32))
    with pytest.raises(InvalidArgumentError, match="still being built"):
        merge_stores(tmp_path / "m", [base.path, tmp_path / "d"])
    with pytest.raises(InvalidArgumentError, match="also an input"):
        merge_stores(base.path, [base.path])


def test_failed_merge_leaves_nothing(tmp_path):
    first, second = piece(tmp_path / "a", 0, 8), piece(tmp_path / "b", 8, 16)
    raw = bytearray(shard_data_path(second.path, 1).read_bytes())
    raw[40] ^= 1
    shard_data_path(second.path, 1).write_bytes(bytes(raw))
    from npeff.errors import StoreCorruptError

    with pytest.raises(StoreCorruptError, match="shard 1"):
        merge_stores(tmp_path / "m", [first.path, second.path])
    assert not (tmp_path / "m").exists()


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
    with pytest.raises(StoreExistsError, match="--overwrite"):
        export_hf(store.path, out)
    export_hf(store.path, out, overwrite=True)
    assert not (tmp_path / "export.partial").exists()


# ----------------------------------------------------------------------------------------------
# CLI


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_info_text_and_json(tmp_path):
    piece(tmp_path / "s", 0, 6)
    text = invoke("info", tmp_path / "s")
    assert text.exit_code == 0 and "m = 6 examples, r = 2, d = 32" in text.output
    assert "ssp-v1 (seed 5, d 32" in text.output
    as_json = invoke("info", tmp_path / "s", "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.output)["num_examples"] == 6


def test_cli_verify_merge_export(tmp_path):
    piece(tmp_path / "a", 0, 5)
    piece(tmp_path / "b", 5, 9)
    assert "OK: 5 examples in 2 shards" in invoke("verify", tmp_path / "a").output
    merged = invoke("merge", tmp_path / "m", tmp_path / "a", tmp_path / "b")
    assert merged.exit_code == 0 and "9 examples" in merged.output
    assert open_store(tmp_path / "m").manifest["provenance"]["command"].startswith("npeff ")
    exported = invoke("export", tmp_path / "m", tmp_path / "hf", "--format", "hf")
    assert exported.exit_code == 0 and (tmp_path / "hf" / "README.md").is_file()
    raw = bytearray(shard_data_path(tmp_path / "a", 1).read_bytes())
    raw[10] ^= 1
    shard_data_path(tmp_path / "a", 1).write_bytes(bytes(raw))
    bad = invoke("verify", tmp_path / "a")
    assert bad.exit_code == 1 and "shard 1 (examples 4-4)" in bad.output
    assert "Traceback" not in bad.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["info", "{tmp}/missing"], "no store at"),
        (["verify", "{tmp}"], "has no manifest.json"),
        (["merge", "{tmp}/out", "{tmp}/missing"], "no store at"),
        (["export", "{tmp}/missing", "{tmp}/out"], "no store at"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, args, message):
    result = invoke(*[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 1
    assert message in result.output and result.output.startswith("Error: ")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_refuses_incompatible_merge(tmp_path):
    piece(tmp_path / "a", 0, 4)
    piece(tmp_path / "b", 4, 8, projection={"kind": "ssp-v1", "seed": 9})
    result = invoke("merge", tmp_path / "m", tmp_path / "a", tmp_path / "b")
    assert result.exit_code == 1 and "not compatible" in result.output
    assert not os.path.exists(tmp_path / "m")


@pytest.mark.parametrize("command", ["info", "verify", "merge", "export", "demo", "check-projection", "build",
                                     "decompose", "fit", "top-examples", "tunings", "compare", "report"])
def test_cli_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Usage: " in result.output
    assert invoke(command, "-h").exit_code == 0
