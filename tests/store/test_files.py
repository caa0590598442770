"""File helpers: atomic writes of files and directories, JSON reading, output directories."""

import os
import stat

import pytest

from npeff.errors import (
    CorruptError,
    NotFoundError,
    OutputExistsError,
    StoreCorruptError,
    StoreExistsError,
    StoreNotFoundError,
)
from npeff.store import _files


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_write_replaces_the_file(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    _files.atomic_write_json(target, {"x": [1, 2]})
    assert _files.read_json(target) == {"x": [1, 2]}
    assert os.listdir(tmp_path) == ["a.json"]


def test_atomic_write_leaves_the_old_file_when_the_body_raises(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with _files.atomic_write(target) as handle:
            handle.write(b"half of the new")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_concurrent_atomic_writes_use_different_temporary_files(tmp_path):
    target = tmp_path / "a.txt"
    with _files.atomic_write(target, "w") as first, _files.atomic_write(target, "w") as second:
        staged = os.listdir(tmp_path)
        assert len(staged) == 2 and all(name.endswith(".partial") for name in staged)
        first.write("first")
        second.write("second")
    assert target.read_text() == "first"  # the one that finished last wins, whole
    assert os.listdir(tmp_path) == ["a.txt"]


def test_written_files_follow_the_umask(tmp_path):
    _files.atomic_write_bytes(tmp_path / "a", b"x")
    # not tempfile's private 0600: others read a store as they read any file the user writes
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o666 & ~current_umask()


def test_atomic_directory_appears_whole(tmp_path):
    target = tmp_path / "deep" / "out"
    with _files.atomic_directory(target) as staging:
        (staging / "a").write_text("a")
        assert not target.exists() and staging.name.endswith(".partial")
    assert os.listdir(target) == ["a"] and os.listdir(target.parent) == ["out"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~current_umask()


def test_atomic_directory_replaces_only_when_asked(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(OSError):
        with _files.atomic_directory(target) as staging:
            (staging / "new").write_text("new")
    assert os.listdir(target) == ["old"] and os.listdir(tmp_path) == ["out"]
    with _files.atomic_directory(target, replace=True) as staging:
        (staging / "new").write_text("new")
    assert os.listdir(target) == ["new"]


def test_atomic_directory_leaves_the_old_one_when_the_body_raises(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with _files.atomic_directory(target, replace=True) as staging:
            (staging / "new").write_text("new")
            raise RuntimeError("boom")
    assert os.listdir(target) == ["old"] and os.listdir(tmp_path) == ["out"]


@pytest.mark.parametrize(
    "content,error,match",
    [
        (None, StoreNotFoundError, "progress record .*x.json does not exist"),
        (b"{", StoreCorruptError, "x.json is not valid JSON"),
        (b"[1]", StoreCorruptError, "x.json must hold a JSON object, got list"),
        (b'"text"', StoreCorruptError, "must hold a JSON object, got str"),
        (b"\xff\xfe", StoreCorruptError, "x.json is not a text file"),
    ],
)
def test_read_json_maps_failures_to_the_given_classes(tmp_path, content, error, match):
    path = tmp_path / "x.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=match):
        _files.read_json(path, what="progress record", missing=StoreNotFoundError, corrupt=StoreCorruptError)


@pytest.mark.parametrize("content,error", [(None, NotFoundError), (b"{", CorruptError)])
def test_read_json_defaults_to_the_neutral_classes(tmp_path, content, error):
    path = tmp_path / "x.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error) as info:
        _files.read_json(path)
    assert type(info.value) is error


def is_ours(path):
    return (path / "manifest.json").is_file()


def _absent(path):
    pass


def _empty_directory(path):
    path.mkdir()


def _file(path):
    path.write_text("x")


def _foreign(path):
    path.mkdir()
    (path / "cat.jpg").write_text("x")


def _ours(path):
    path.mkdir()
    (path / "manifest.json").write_text("{}")
    (path / "data").write_text("x")


@pytest.mark.parametrize(
    "make,options,outcome",
    [
        (_absent, {}, []),
        (_empty_directory, {}, []),
        (_file, {}, "is a file; give a directory for the thing"),
        (_file, {"overwrite": True}, "is a file"),
        (_foreign, {}, "is not an npeff thing; refusing to write into it"),
        (_foreign, {"overwrite": True}, "is not an npeff thing"),
        (_foreign, {"resume": lambda path: True}, "is not an npeff thing"),
        (_ours, {}, "a thing already exists at .*; pass --overwrite to replace it"),
        (_ours, {"resume": lambda path: False}, "a thing already exists"),
        (_ours, {"overwrite": True}, []),
        (_ours, {"resume": lambda path: True}, ["data", "manifest.json"]),
        (_ours, {"overwrite": True, "resume": lambda path: True}, []),
    ],
)
def test_prepare_output_dir(tmp_path, make, options, outcome):
    path = tmp_path / "out"
    make(path)
    arguments = {"what": "thing", "is_ours": is_ours, "overwrite": False, **options}
    if isinstance(outcome, str):
        before = sorted(os.listdir(path)) if path.is_dir() else path.read_text()
        with pytest.raises(OutputExistsError, match=outcome):
            _files.prepare_output_dir(path, **arguments)
        assert (sorted(os.listdir(path)) if path.is_dir() else path.read_text()) == before
    else:
        assert _files.prepare_output_dir(path, **arguments) == path
        assert sorted(os.listdir(path)) == outcome


@pytest.mark.parametrize(
    "make,options,action",
    [(_absent, {}, "create"), (_empty_directory, {}, "create"), (_ours, {"overwrite": True}, "replace"),
     (_ours, {"resume": lambda path: True}, "resume")],
)
def test_check_output_dir_touches_nothing(tmp_path, make, options, action):
    path = tmp_path / "out"
    make(path)
    before = tree(tmp_path)
    assert _files.check_output_dir(path, what="thing", is_ours=is_ours, **{"overwrite": False, **options}) == action
    assert tree(tmp_path) == before


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_output_dir_errors_take_the_given_class(tmp_path):
    _ours(tmp_path / "out")
    with pytest.raises(StoreExistsError):
        _files.prepare_output_dir(tmp_path / "out", what="store", is_ours=is_ours, overwrite=False,
                                  exists=StoreExistsError)


def test_checksums_and_sizes(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub" / "b").write_bytes(b"y" * 24)
    assert _files.file_checksum(tmp_path / "a") == _files.bytes_checksum(b"x" * 1000)
    assert _files.file_checksum(tmp_path / "a") != _files.file_checksum(tmp_path / "sub" / "b")
    assert _files.directory_size(tmp_path) == 1024


def test_staging_left_by_killed_writers_is_cleared(tmp_path):
    (tmp_path / ".out.dead01.partial").mkdir()
    (tmp_path / ".out.dead01.partial" / "half").write_text("x")
    (tmp_path / ".out.dead02.partial").write_text("x")
    (tmp_path / ".other.dead03.partial").write_text("someone else's")
    with _files.atomic_directory(tmp_path / "out") as staging:
        (staging / "a").write_text("a")
    assert sorted(os.listdir(tmp_path)) == [".other.dead03.partial", "out"]


def test_a_directory_holding_only_staging_leftovers_counts_as_empty(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".W.npy.dead.partial").write_text("x")
    assert _files.check_output_dir(out, what="thing", is_ours=lambda p: False, overwrite=False) == "create"
    (out / "sub").mkdir()
    (out / "sub" / ".x.dead.partial").write_text("x")
    (out / "sub" / "real").write_text("keep")
    with pytest.raises(OutputExistsError, match="not an npeff thing"):
        _files.check_output_dir(out, what="thing", is_ours=lambda p: False, overwrite=False)
    _files.prepare_output_dir(out, what="thing", is_ours=lambda p: True, overwrite=False, resume=lambda p: True)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["sub", "sub/real"]


@pytest.mark.parametrize("content, expected", [('{"format": "npeff-decomposition"}', "npeff-decomposition"),
                                               ("[1, 2]", None), ("{broken", None), (None, None)],
                         ids=["object", "list", "broken", "absent"])
def test_manifest_format(tmp_path, content, expected):
    if content is not None:
        (tmp_path / "manifest.json").write_text(content)
    assert _files.manifest_format(tmp_path) == expected
