"""What a reader serves is what was written, where it was written: shards moved, swapped or replaced
by other valid ones, edited tensor metadata and table parts that contradict the manifest are refused
on read (naming the shard or the file), by ``verify``, ``merge``, ``decompose`` and ``top-examples``,
and noted by ``info``; the content id stays a digest of what is checked."""

import json
import shutil
import threading

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash
from click.testing import CliRunner

from npeff.cli.main import cli
from npeff.errors import StoreCorruptError
from npeff.ops import decompose
from npeff.store import _files, create_store, format_info, merge_stores, open_store, store_info, verify_store
from npeff.store._layout import shard_data_path, shard_table_path
from npeff.store.upgrade import upgrade_store
from tests.store.helpers import SSP, build, pef_rows

STEPS = dict(warmup_steps=2, joint_steps=2, warmup_lr=0.05, joint_lr=0.05, dtype="float64")
OLD_STORE = "tests/data/v0.1.0/store"


def three_shards(path):
    """Examples 0-11 in shards of 4 (inner chunks of 2)."""
    return build(path, 12, 2, 32, shard=4, chunk=2)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


# --- the damage -----------------------------------------------------------------------------------

def swap_shards(root):
    first, second = shard_data_path(root, 1), shard_data_path(root, 2)
    first.rename(root / "tmp")
    second.rename(first)
    (root / "tmp").rename(second)


def duplicate_shard(root):
    """Shard 0's file copied over shard 1's (a shard moved to where another belongs)."""
    shutil.copyfile(shard_data_path(root, 0), shard_data_path(root, 1))


def foreign_shard(root):
    """Shard 1 replaced by shard 1 of another store of the same layout, holding other examples."""
    other = root.parent / f"{root.name}-other"
    writer = create_store(other, rank=2, dim=32, projection=SSP, shard_examples=4, chunk_examples=2)
    writer.append(pef_rows(100, 112, 2, 32))
    writer.finalize()
    shutil.copyfile(shard_data_path(other, 1), shard_data_path(root, 1))


DATA_DAMAGE = {"swapped": swap_shards, "duplicated": duplicate_shard, "foreign": foreign_shard}


def edit_tensor_metadata(change):
    def damage(root):
        path = root / "pefs" / "zarr.json"
        metadata = json.loads(path.read_text())
        change(metadata)
        path.write_text(json.dumps(metadata))
    return damage


def _without_crc(key):
    def change(metadata):
        sharding = metadata["codecs"][0]["configuration"]
        sharding[key] = [codec for codec in sharding[key] if codec["name"] != "crc32c"]
    return change


METADATA_DAMAGE = {
    "chunk-key-v2": (edit_tensor_metadata(lambda m: m.update(chunk_key_encoding={
        "name": "v2", "configuration": {"separator": "/"}})), '"chunk_key_encoding"'),
    "no-chunk-crc": (edit_tensor_metadata(_without_crc("codecs")), '"codecs" differ'),
    "no-index-crc": (edit_tensor_metadata(_without_crc("index_codecs")), '"codecs" differ'),
    "dtype": (edit_tensor_metadata(lambda m: m.update(data_type="int32")), '"data_type"'),
    "shape": (edit_tensor_metadata(lambda m: m.update(shape=[8, 2, 32])), "says shape [8, 2, 32]"),
}


def forget_metadata_record(root):
    """The manifest as a store finalized before the tensor metadata's checksum was recorded."""
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["tensor_metadata_checksum"]
    path.write_text(json.dumps(manifest))


def rewrite_part(transform, *, forge):
    """Rewrite table part 1 with ``transform``; ``forge`` also records its new checksum (as a tool
    that launders damage would), so that only the checks of the rows themselves can catch it."""
    def damage(root):
        path = shard_table_path(root, 1)
        data = transform(pq.read_table(path))
        if isinstance(data, pa.Table):
            sink = pa.BufferOutputStream()
            pq.write_table(data, sink)
            data = sink.getvalue().to_pybytes()
        path.write_bytes(data)
        if forge:
            manifest = json.loads((root / "manifest.json").read_text())
            manifest["shards"][1]["table_checksum"] = xxhash.xxh3_128_hexdigest(data)
            (root / "manifest.json").write_text(json.dumps(manifest))
    return damage


def _reversed(table):
    return table.take(pa.array(range(table.num_rows - 1, -1, -1)))


def _bogus_status(table):
    statuses = table.column("status").to_pylist()
    statuses[2] = "bogus"
    return table.set_column(table.schema.get_field_index("status"), table.schema.field("status"),
                            pa.array(statuses, pa.string()))


TABLE_DAMAGE = {
    "reversed": (rewrite_part(_reversed, forge=False), "fails its checksum"),
    "edited-text": (rewrite_part(lambda t: t.set_column(2, "text", pa.array(["x"] * t.num_rows)), forge=False),
                    "fails its checksum"),
    "reversed-forged": (rewrite_part(_reversed, forge=True), "has example_index 7 in row 0, where example 4 belongs"),
    "no-status-forged": (rewrite_part(lambda t: t.drop_columns(["status"]), forge=True), "lacks the column status"),
    "bogus-status-forged": (rewrite_part(_bogus_status, forge=True), "holds statuses that are not ok, non-finite, "
                                                                      "skipped: bogus"),
    "extra-row-forged": (rewrite_part(lambda t: pa.concat_tables([t, t.slice(0, 1)]), forge=True),
                         "holds 5 rows for the 4 examples of shard 1"),
    "fewer-rows-forged": (rewrite_part(lambda t: t.slice(0, 3), forge=True), "holds 3 rows for the 4 examples"),
    "garbage-forged": (rewrite_part(lambda t: b"not parquet at all", forge=True), "cannot be read"),
}


# --- shard data -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DATA_DAMAGE))
def test_a_shard_not_where_it_was_written_is_refused_on_read(tmp_path, name):
    three_shards(tmp_path / "s")
    DATA_DAMAGE[name](tmp_path / "s")
    store = open_store(tmp_path / "s")
    np.testing.assert_array_equal(store.read(0, 4), pef_rows(0, 4, 2, 32))  # shard 0 is sound
    with pytest.raises(StoreCorruptError, match=r"shard 1 of .*s \(examples 4-7\) failed its checksum: its data file "
                                                r"pefs/c/1/0/0 is not the one the manifest records.*run `npeff verify`"):
        store.read(5, 6)  # however little of the shard is read
    with pytest.raises(StoreCorruptError, match="shard 1 of"):
        list(open_store(tmp_path / "s").iter_chunks())
    with pytest.raises(StoreCorruptError, match="shard [12] of"):  # blocks read concurrently: a swap damages both
        open_store(tmp_path / "s").to_dask().compute(scheduler="threads")
    problems = verify_store(tmp_path / "s").problems
    assert problems[0].startswith("shard 1 (examples 4-7): data file pefs/c/1/0/0 fails its checksum")


def test_verify_names_the_shard_a_file_holds(tmp_path):
    three_shards(tmp_path / "s")
    swap_shards(tmp_path / "s")
    assert verify_store(tmp_path / "s").problems == [
        "shard 1 (examples 4-7): data file pefs/c/1/0/0 fails its checksum: it holds the data of shard 2 "
        "(shards moved or swapped)",
        "shard 2 (examples 8-11): data file pefs/c/2/0/0 fails its checksum: it holds the data of shard 1 "
        "(shards moved or swapped)"]


@pytest.mark.parametrize("name", sorted(DATA_DAMAGE))
def test_decompose_and_merge_refuse_a_misplaced_shard(tmp_path, name):
    three_shards(tmp_path / "s")
    good = three_shards(tmp_path / "good")
    merge_stores(tmp_path / "m", [good.path])
    DATA_DAMAGE[name](tmp_path / "s")
    with pytest.raises(StoreCorruptError, match="shard [12] of .* failed its checksum"):  # shards read concurrently
        decompose(open_store(tmp_path / "s"), 2, out=tmp_path / "d", **STEPS)
    assert not (tmp_path / "d" / "W.npy").exists()
    with pytest.raises(StoreCorruptError, match="shard 1 of"):
        merge_stores(tmp_path / "m", [good.path, tmp_path / "s"], overwrite=True)
    assert verify_store(tmp_path / "m").ok and open_store(tmp_path / "m").num_examples == 12  # left as it was
    with pytest.raises(StoreCorruptError, match="shard 1 of"):
        merge_stores(tmp_path / "m2", [tmp_path / "s"])
    assert not (tmp_path / "m2").exists()  # nothing laundered into fresh checksums
    assert_one_line_error(invoke("decompose", tmp_path / "s", "--out", tmp_path / "d2", "-C", "2",
                                 "--warmup-steps", "2", "--joint-steps", "2"), "failed its checksum")
    assert_one_line_error(invoke("merge", tmp_path / "m3", tmp_path / "s"), "shard 1 of")


def test_each_shard_is_hashed_once_per_process(tmp_path, monkeypatch):
    three_shards(tmp_path / "s")
    three_shards(tmp_path / "t")
    hashed = []
    original = _files.blocks_checksum
    monkeypatch.setattr(_files, "blocks_checksum", lambda blocks: hashed.append(1) or original(blocks))
    store = open_store(tmp_path / "s")
    store.read(0, 12)
    store.read(1, 3)
    list(open_store(tmp_path / "s").iter_chunks())  # another handle on the same store
    assert len(hashed) == 3
    threads = [threading.Thread(target=open_store(tmp_path / "t").read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(hashed) == 6  # concurrent first reads of a shard hash it once
    swap_shards(tmp_path / "s")  # files put in place later are other files: hashed again
    with pytest.raises(StoreCorruptError, match="shard 1 of"):
        store.read(4, 8)


def test_the_check_can_be_turned_off(tmp_path):
    import pickle

    three_shards(tmp_path / "s")
    swap_shards(tmp_path / "s")
    unchecked = open_store(tmp_path / "s", check_shards=False)
    np.testing.assert_array_equal(unchecked.read(4, 8), pef_rows(8, 12, 2, 32))  # crc32c alone passes the swap
    assert pickle.loads(pickle.dumps(unchecked))._check_shards is False
    assert pickle.loads(pickle.dumps(open_store(tmp_path / "s")))._check_shards is True


def test_a_swap_is_refused_over_http(http_root):
    three_shards(http_root.path / "st")
    swap_shards(http_root.path / "st")
    with pytest.raises(StoreCorruptError, match=r"shard 1 of http://.*/st \(examples 4-7\) failed its checksum"):
        open_store(f"{http_root.url}/st").read(4, 8)


# --- tensor metadata ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(METADATA_DAMAGE))
def test_edited_tensor_metadata_is_refused(tmp_path, name):
    store = three_shards(tmp_path / "s")
    assert store.store_manifest.tensor_metadata_checksum == _files.file_checksum(tmp_path / "s" / "pefs" / "zarr.json")
    damage, specific = METADATA_DAMAGE[name]
    damage(tmp_path / "s")
    with pytest.raises(StoreCorruptError, match=r"s: tensor metadata pefs/zarr.json fails its checksum .*npeff verify"):
        open_store(tmp_path / "s")
    assert_one_line_error(invoke("info", tmp_path / "s"), "pefs/zarr.json fails its checksum")
    (problem,) = verify_store(tmp_path / "s").problems  # the specific mismatch, which the checksum only flags
    assert problem.startswith("tensor metadata pefs/zarr.json ") and specific in problem
    verified = invoke("verify", "-q", tmp_path / "s")
    assert verified.exit_code == 1 and verified.output.splitlines() == [
        f"problem: {problem}", f"Error: {tmp_path / 's'} failed verification: 1 problem(s)"]
    forget_metadata_record(tmp_path / "s")  # as a store finalized by an earlier npeff: the layout still decides
    old = open_store(tmp_path / "s")
    with pytest.raises(StoreCorruptError, match="tensor metadata pefs/zarr.json") as raised:
        old.read(0, 4)
    assert specific in str(raised.value) and "\n" not in str(raised.value)
    assert verify_store(tmp_path / "s").problems == [problem]
    with pytest.raises(StoreCorruptError, match="cannot be upgraded"):
        upgrade_store(tmp_path / "s")  # an edited file is never certified
    assert "tensor_metadata_checksum" not in json.loads((tmp_path / "s" / "manifest.json").read_text())


def test_cosmetic_edits_of_an_old_stores_metadata_still_read(tmp_path):
    three_shards(tmp_path / "s")
    edit_tensor_metadata(lambda m: m.update(attributes={"mine": 1}))(tmp_path / "s")
    forget_metadata_record(tmp_path / "s")
    np.testing.assert_array_equal(open_store(tmp_path / "s").read(), pef_rows(0, 12, 2, 32))


def test_a_store_from_0_1_0_opens_and_upgrade_records_its_metadata(tmp_path):
    before = open_store(OLD_STORE)
    assert before.store_manifest.tensor_metadata_checksum is None
    assert "tensor_metadata_checksum" not in before.manifest
    assert before.content_id == "f8dc70f7a468252bb74d5feb4d838378"  # the id 0.1.0 recorded in decompositions
    assert verify_store(OLD_STORE).ok and store_info(before)["notes"] == []
    shutil.copytree(OLD_STORE, tmp_path / "old")
    assert "manifest.json: the checksum of pefs/zarr.json" in upgrade_store(tmp_path / "old")
    after = open_store(tmp_path / "old")
    assert after.store_manifest.tensor_metadata_checksum == _files.file_checksum(tmp_path / "old" / "pefs" / "zarr.json")
    assert after.content_id == before.content_id
    edit_tensor_metadata(lambda m: m.update(attributes={}))(tmp_path / "old")
    with pytest.raises(StoreCorruptError, match="fails its checksum"):
        open_store(tmp_path / "old")


def test_a_store_being_built_records_no_metadata_checksum(tmp_path):
    writer = create_store(tmp_path / "s", rank=1, dim=32, projection={"kind": "external"}, shard_examples=2,
                          chunk_examples=1)
    writer.append(pef_rows(0, 5, 1, 32))
    writer._commit_pending()
    building = open_store(tmp_path / "s")
    assert building.store_manifest.tensor_metadata_checksum is None
    np.testing.assert_array_equal(building.read(), pef_rows(0, 4, 1, 32))
    assert writer.finalize().store_manifest.tensor_metadata_checksum is not None


# --- the table ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TABLE_DAMAGE))
def test_a_table_part_that_contradicts_the_manifest_is_refused(tmp_path, name):
    three_shards(tmp_path / "s")
    damage, specific = TABLE_DAMAGE[name]
    damage(tmp_path / "s")
    with pytest.raises(StoreCorruptError) as raised:
        open_store(tmp_path / "s").examples
    message = str(raised.value)
    assert message.startswith(f"shard 1 of {tmp_path / 's'}: table part examples/part-000001.parquet ")
    assert specific in message and message.endswith("; run `npeff verify`") and "\n" not in message
    (problem,) = verify_store(tmp_path / "s").problems
    assert problem.startswith("shard 1 (examples 4-7): table part examples/part-000001.parquet ") and specific in problem
    with pytest.raises(StoreCorruptError, match="part-000001.parquet"):
        merge_stores(tmp_path / "m", [tmp_path / "s"])
    assert not (tmp_path / "m").exists()
    with pytest.raises(StoreCorruptError, match="part-000001.parquet"):
        decompose(open_store(tmp_path / "s"), 2, **STEPS)


@pytest.mark.parametrize("name", sorted(TABLE_DAMAGE))
def test_info_notes_a_damaged_table(tmp_path, name):
    three_shards(tmp_path / "s")
    damage, specific = TABLE_DAMAGE[name]
    damage(tmp_path / "s")
    info = store_info(open_store(tmp_path / "s"))
    assert info["example_status"] == {"ok": 8} and info["num_examples"] == 12
    first, second = info["notes"]
    assert first.startswith("shard 1 (examples 4-7): table part examples/part-000001.parquet ") and specific in first
    assert second == "the statuses cover 8 of the manifest's 12 examples; run `npeff verify`"
    assert f"note         {first}" in format_info(info).splitlines()
    shown = invoke("info", tmp_path / "s")
    assert shown.exit_code == 0 and "Traceback" not in shown.output and specific in shown.output


def test_top_examples_refuses_a_damaged_table(tmp_path):
    store = three_shards(tmp_path / "s")
    decompose(store, 2, out=tmp_path / "d", **STEPS)
    assert invoke("top-examples", tmp_path / "d", "-k", "2").exit_code == 0
    rewrite_part(_reversed, forge=False)(tmp_path / "s")
    assert_one_line_error(invoke("top-examples", tmp_path / "d", "-k", "2"),
                          "shard 1 of", "table part examples/part-000001.parquet fails its checksum")
    rewrite_part(_reversed, forge=True)(tmp_path / "s")  # a laundered checksum changes the content id
    assert_one_line_error(invoke("top-examples", tmp_path / "d", "-k", "2"), "does not hold the examples")
    three_shards(tmp_path / "t")
    edit_tensor_metadata(lambda m: m.update(chunk_key_encoding={"name": "v2"}))(tmp_path / "t")
    assert_one_line_error(invoke("top-examples", tmp_path / "d", "--store", tmp_path / "t", "-k", "2"),
                          "pefs/zarr.json fails its checksum")


# --- the content id -------------------------------------------------------------------------------

def test_content_id_is_of_what_is_checked(tmp_path):
    first, same = three_shards(tmp_path / "a"), three_shards(tmp_path / "b")
    assert first.content_id == same.content_id
    text = "\n".join(f"{s.start}:{s.stop}:{s.data_checksum}:{s.table_checksum}" for s in first.shards)
    assert first.content_id == _files.bytes_checksum(f"{first.fingerprint}\n{text}".encode())
    for shard in first.shards:  # every checksum it is made of is the one of the file there
        assert shard.data_checksum == _files.file_checksum(shard_data_path(first.path, shard.index))
        assert shard.table_checksum == _files.file_checksum(shard_table_path(first.path, shard.index))
