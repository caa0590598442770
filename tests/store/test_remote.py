"""Stores read from elsewhere: over HTTP (Range requests) and S3 from real servers on 127.0.0.1,
from a Hugging Face Hub snapshot in the cache (offline), and what npeff refuses (writing to a URL,
unknown schemes)."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

from npeff.errors import InvalidArgumentError, StoreCorruptError, StoreNotFoundError
from npeff.ops import decompose
from npeff.store import create_store, open_store, verify_store
from npeff.store._layout import shard_data_path
from npeff.store.location import StoreUnreachableError, parse_location
from tests import tolerances
from tests.ops.decomposition.helpers import make_store, random_pefs
from tests.store.helpers import build, flip_byte

STEPS = dict(warmup_steps=2, joint_steps=3, warmup_lr=0.05, joint_lr=0.05, dtype="float64")


def assert_same_store(remote, local):
    assert remote.manifest == local.manifest and remote.content_id == local.content_id
    np.testing.assert_array_equal(remote.read(), local.read())
    assert remote.examples.equals(local.examples)
    assert [c.start for c in remote.iter_chunks()] == [c.start for c in local.iter_chunks()]


def test_http_store_reads_like_the_local_one(http_root):
    local = build(http_root.path / "st", 23, 2, 32)
    remote = open_store(f"{http_root.url}/st/")
    assert remote.url == f"{http_root.url}/st" and remote.location.is_remote
    assert_same_store(remote, local)
    np.testing.assert_array_equal(remote.read(6, 13), local.read(6, 13))
    report = verify_store(remote.url)
    assert report.ok, report.problems
    assert pickle.loads(pickle.dumps(remote)).url == remote.url  # what cluster workers receive


def test_http_damage_is_named(http_root):
    build(http_root.path / "st", 23, 2, 32)
    url = f"{http_root.url}/st"
    data = shard_data_path(http_root.path / "st", 1)
    flip_byte(data, len(data.read_bytes()) // 2, 1)
    assert verify_store(url).problems == ["shard 1 (examples 5-9): data file pefs/c/1/0/0 fails its checksum"]
    shard_data_path(http_root.path / "st", 3).unlink()
    with pytest.raises(StoreCorruptError, match=r"shard 3 of .* is missing its data file pefs/c/3/0/0"):
        open_store(url).read(15, 20)
    assert "shard 3 (examples 15-19): data file pefs/c/3/0/0 is missing" in verify_store(url).problems


def test_http_locations_that_are_not_stores(http_root, monkeypatch):
    monkeypatch.setenv("NPEFF_REMOTE_RETRIES", "2")
    with pytest.raises(StoreNotFoundError, match="is not an npeff store: it has no manifest.json"):
        open_store(f"{http_root.url}/nothing-here")
    port = http_root.url.rsplit(":", 1)[1]
    closed = f"http://127.0.0.1:{int(port) + 1 if int(port) < 65535 else 1}/st"
    with pytest.raises(StoreUnreachableError, match="cannot read .*manifest.json"):
        open_store(closed)


def test_s3_store_decomposes_like_the_local_one(s3_bucket, tmp_path):
    local = make_store(tmp_path / "s", random_pefs(m=14, seed=3), shard=4)
    url = s3_bucket.upload(tmp_path / "s", "teams/vision/s")
    remote = open_store(url)
    assert_same_store(remote, local)
    assert verify_store(url).ok
    expected = decompose(local, 3, **STEPS)
    result = decompose(url, 3, out=tmp_path / "d", **STEPS)
    for name in ("W", "H", "losses"):
        np.testing.assert_allclose(getattr(result, name), expected[name], **tolerances.FLOAT64_REGROUPED)
    assert result.manifest["store"] == url  # analysis reopens the store from there, from any directory
    streamed = decompose(url, 3, memory_budget=1, **STEPS)
    np.testing.assert_allclose(streamed["W"], expected["W"], **tolerances.FLOAT64_REGROUPED)


def test_s3_damage_is_named(s3_bucket, tmp_path):
    build(tmp_path / "st", 12, 2, 32, shard=4, chunk=2)
    damaged = bytearray(shard_data_path(tmp_path / "st", 2).read_bytes())
    damaged[40] ^= 1
    url = s3_bucket.upload(tmp_path / "st", "st")
    s3_bucket.put("st/pefs/c/2/0/0", bytes(damaged))
    assert verify_store(url).problems == ["shard 2 (examples 8-11): data file pefs/c/2/0/0 fails its checksum"]
    with pytest.raises(StoreCorruptError, match="shard 2 of .* failed its checksum"):
        open_store(url).read(8, 12)
    s3_bucket.put("st/notes.txt", b"x")
    assert verify_store(url).notes == ["files not part of the store: notes.txt"]


def test_cluster_workers_read_a_remote_store(http_root):
    store = make_store(http_root.path / "s", random_pefs(m=16, seed=4), shard=4)
    single = decompose(store, 3, **STEPS)
    spread = decompose(f"{http_root.url}/s", 3, cluster="local:2", **STEPS)
    for name in ("W", "H", "losses"):
        np.testing.assert_allclose(spread[name], single[name], **tolerances.FLOAT64_REDUCED_ELSEWHERE)


def test_cli_reads_remote_stores(http_root, tmp_path):
    make_store(http_root.path / "s", random_pefs(m=12, seed=2), shard=4)
    url = f"{http_root.url}/s"
    npeff = [sys.executable, "-m", "npeff.cli.main"]
    info = subprocess.run([*npeff, "info", url, "--json"], capture_output=True, text=True, check=True)
    described = json.loads(info.stdout)
    assert (described["num_examples"], described["url"], described["size_on_disk"]) == (12, url, None)
    verify = subprocess.run([*npeff, "verify", url], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    subprocess.run([*npeff, "decompose", url, "--out", str(tmp_path / "d"), "-C", "3", "--warmup-steps", "2",
                    "--joint-steps", "2"], capture_output=True, text=True, check=True, cwd=tmp_path)
    top = subprocess.run([*npeff, "top-examples", str(tmp_path / "d"), "--component", "0", "-k", "3"],
                         capture_output=True, text=True, cwd=tmp_path.parent)  # the store is found by its URL
    assert top.returncode == 0, top.stderr
    missing = subprocess.run([*npeff, "info", f"{http_root.url}/nope"], capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines()[-1].startswith("Error: ")


def hub_snapshot(cache, tmp_path, repo="teams/sst2-pefs", commit="a" * 40, subdir="stores/s"):
    """A dataset repository in the Hub cache as huggingface_hub lays it out (refs/main -> commit)."""
    folder = cache / f"datasets--{repo.replace('/', '--')}"
    build(folder / "snapshots" / commit / subdir, 9, 2, 32, shard=4)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    return folder / "snapshots" / commit / subdir


def test_hub_store_from_the_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    local = hub_snapshot(cache, tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    store = open_store("hf://datasets/teams/sst2-pefs/stores/s")
    assert store.revision == "a" * 40
    assert store.url == f"hf://datasets/teams/sst2-pefs@{'a' * 40}/stores/s"  # pinned
    assert_same_store(store, open_store(local))
    assert open_store(store.url).location.local == local
    with pytest.raises(StoreNotFoundError, match="HF_HUB_OFFLINE"):
        open_store("hf://datasets/teams/other/s")


def test_a_url_turned_into_a_path_is_refused():
    from pathlib import Path

    with pytest.raises(InvalidArgumentError, match="give the URL as a string"):
        open_store(Path("s3://bucket/store"))


@pytest.mark.parametrize("location, message", [
    ("ftp://host/store", "npeff reads local paths and file://, http://"),
    ("s3:///prefix", "names no bucket"),
    ("hf://models/org/name", "hf://datasets/ORG/NAME"),
    ("file://server/share/s", "file:///abs/path"),
])
def test_malformed_locations(location, message):
    with pytest.raises(InvalidArgumentError, match=message):
        parse_location(location)


def test_file_url_is_the_local_store(tmp_path):
    local = build(tmp_path / "s", 6, 2, 32)
    assert_same_store(open_store(f"file://{tmp_path / 's'}"), local)


def test_writing_to_a_url_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URL taken for a path would become the folder ./s3:
    with pytest.raises(InvalidArgumentError, match="only to a local directory"):
        create_store("s3://bucket/s", rank=1, dim=32, projection={"kind": "external"})
    with pytest.raises(InvalidArgumentError, match="only to a local directory"):
        decompose(make_store(tmp_path / "s", random_pefs(m=4)), 2, out="file:///tmp/d", **STEPS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
