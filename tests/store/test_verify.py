"""Verifying stores: a sound store passes; each kind of damage is named with its shard and file."""

import pytest

from npeff.errors import StoreCorruptError
from npeff.store import create_store, verify_store
from npeff.store._layout import shard_data_path, shard_table_path
from tests.store.helpers import build, flip_byte, pef_rows


def test_a_sound_store_passes(tmp_path):
    report = verify_store(build(tmp_path / "s", 12, 2, 32, shard=4, chunk=2).path)
    assert report.ok and report.problems == [] and report.notes == []
    assert (report.num_shards, report.num_examples, report.status) == (3, 12, "finalized")


def _flip_data(root):
    flip_byte(shard_data_path(root, 2), len(shard_data_path(root, 2).read_bytes()) // 2, 1)


def _damage_table_tail(root):
    table = shard_table_path(root, 0)
    table.write_bytes(table.read_bytes()[:-10] + b"0123456789")


@pytest.mark.parametrize(
    "damage,problem",
    [
        (_flip_data, "shard 2 (examples 8-11): data file pefs/c/2/0/0 fails its checksum"),
        (lambda root: shard_data_path(root, 1).unlink(), "shard 1 (examples 4-7): data file pefs/c/1/0/0 is missing"),
        (_damage_table_tail, "shard 0 (examples 0-3): table part examples/part-000000.parquet fails its checksum"),
        (lambda root: shard_table_path(root, 2).unlink(),
         "shard 2 (examples 8-11): table part examples/part-000002.parquet is missing"),
        (lambda root: (root / "pefs" / "zarr.json").write_text("{"), "tensor metadata pefs/zarr.json cannot be opened"),
    ],
)
def test_each_damage_is_named(tmp_path, damage, problem):
    build(tmp_path / "s", 12, 2, 32, shard=4, chunk=2)
    damage(tmp_path / "s")
    report = verify_store(tmp_path / "s")
    assert not report.ok and len(report.problems) == 1
    assert report.problems[0].startswith(problem)


def test_every_problem_is_reported(tmp_path):
    build(tmp_path / "s", 12, 2, 32, shard=4, chunk=2)
    _flip_data(tmp_path / "s")
    _damage_table_tail(tmp_path / "s")
    assert len(verify_store(tmp_path / "s").problems) == 2


def test_a_store_being_built_is_checked_as_far_as_committed(tmp_path):
    writer = create_store(tmp_path / "s", rank=1, dim=32, projection={"kind": "external"},
                          shard_examples=2, chunk_examples=1)
    writer.append(pef_rows(0, 5, 1, 32))
    writer._commit_pending()  # the second shard's write completes (as the next append would see)
    report = verify_store(tmp_path / "s")
    assert report.ok and report.status == "building" and report.num_examples == 4
    assert report.notes == ["the store is still being built: checking its 2 committed shards"]
    shard_table_path(tmp_path / "s", 1).unlink()
    assert verify_store(tmp_path / "s").problems == [
        "shard 1 (examples 2-3): table part examples/part-000001.parquet is missing"]


def test_files_beside_the_store_are_a_note_not_a_problem(tmp_path):
    build(tmp_path / "s", 4, 1, 32)
    (tmp_path / "s" / "notes.txt").write_text("mine")
    report = verify_store(tmp_path / "s")
    assert report.ok and report.notes == ["files not part of the store: notes.txt"]


def test_an_unreadable_manifest_is_an_error(tmp_path):
    build(tmp_path / "s", 4, 1, 32)
    (tmp_path / "s" / "manifest.json").write_text("{")
    with pytest.raises(StoreCorruptError, match="not valid JSON"):
        verify_store(tmp_path / "s")


def test_links_out_of_the_store_are_noted(tmp_path):
    import os
    import shutil

    from tests.store.helpers import piece as make_piece

    store = make_piece(tmp_path / "s", 0, 6)
    shard = store.path / "pefs" / "c" / "0" / "0" / "0"
    shutil.move(shard, tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", shard)
    report = verify_store(store.path)
    assert report.ok and any("symbolic links to files outside the store" in note and "pefs/c/0/0/0" in note
                             for note in report.notes)
