"""Crash safety: a build killed with SIGKILL resumes to the same bytes; readers run beside writers."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from npeff.store import open_store
from npeff.store._layout import PROGRESS, shard_data_path, shard_table_path
from tests.store.helpers import pef_rows

M, RANK, DIM, SHARD = 40, 2, 64, 4
REPO = Path(__file__).resolve().parents[2]

BUILD_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from npeff.store import create_store
    from tests.store.helpers import pef_rows, example_records
    path, m, rank, dim, shard, delay, resume = sys.argv[1:8]
    m, rank, dim, shard, delay = int(m), int(rank), int(dim), int(shard), float(delay)
    writer = create_store(path, rank=rank, dim=dim, projection={"kind": "ssp-v1", "seed": 1},
                          shard_examples=shard, chunk_examples=2, resume=resume == "1",
                          command="test build")
    for i in range(writer.num_examples, m):   # a resumed build continues after the last commit
        writer.append(pef_rows(i, i + 1, rank, dim), [dict(example_records(i, i + 1)[0])])
        time.sleep(delay)
    writer.finalize()
    print("done")
    """
)


def run_build(path, *, delay=0.0, resume=False, wait=True):
    args = [sys.executable, "-c", BUILD_SCRIPT, str(path), str(M), str(RANK), str(DIM), str(SHARD),
            str(delay), "1" if resume else "0"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if wait:
        out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def committed_shards(path):
    import json

    try:
        return len(json.loads((path / PROGRESS).read_text())["shards"])
    except (FileNotFoundError, ValueError):
        return 0


def kill_after(path, shards, process):
    deadline = time.time() + 60
    while committed_shards(path) < shards:
        assert process.poll() is None, process.stderr.read().decode()
        assert time.time() < deadline, "build made no progress"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.communicate()


def store_files(path):
    """Bytes of every data and table file (the manifest holds timestamps, so is compared apart)."""
    store = open_store(path)
    return {shard.index: (shard_data_path(path, shard.index).read_bytes(),
                          shard_table_path(path, shard.index).read_bytes()) for shard in store.shards}


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_bytes(tmp_path):
    reference = tmp_path / "reference"
    run_build(reference)
    interrupted = tmp_path / "interrupted"
    for shards_before_kill in (2, 5):  # killed twice, at different points
        kill_after(interrupted, shards_before_kill,
                   run_build(interrupted, delay=0.01, resume=True, wait=False))
        assert open_store(interrupted).status == "building"
    partial = open_store(interrupted)
    assert partial.num_examples % SHARD == 0 and partial.num_examples >= 5 * SHARD
    run_build(interrupted, resume=True)

    done, ref = open_store(interrupted), open_store(reference)
    assert done.status == "finalized" and done.num_examples == M
    assert store_files(interrupted) == store_files(reference)
    assert done.manifest["shards"] == ref.manifest["shards"]
    np.testing.assert_array_equal(done.read(), pef_rows(0, M, RANK, DIM))
    assert done.examples.column("example_index").to_pylist() == list(range(M))
    assert not list(interrupted.rglob("*.partial"))


def test_uncommitted_leftovers_are_discarded(tmp_path):
    """Files of a shard written but not committed (killed before progress.json) are removed."""
    from npeff.store import create_store

    path = tmp_path / "s"
    writer = create_store(path, rank=RANK, dim=DIM, projection={"kind": "ssp-v1", "seed": 1},
                          shard_examples=SHARD, chunk_examples=2)
    writer.append(pef_rows(0, 2 * SHARD, RANK, DIM))
    writer._commit_pending()  # shards 0 and 1 committed
    # simulate a kill after shard 2's data and table were written but before its commit
    progress = (path / PROGRESS).read_bytes()
    writer.append(pef_rows(2 * SHARD, 3 * SHARD, RANK, DIM))
    writer._commit_pending()
    assert shard_table_path(path, 2).exists()
    (path / PROGRESS).write_bytes(progress)
    (path / "examples" / "part-000009.parquet.partial").write_bytes(b"junk")
    resumed = create_store(path, rank=RANK, dim=DIM, projection={"kind": "ssp-v1", "seed": 1},
                           shard_examples=SHARD, chunk_examples=2, resume=True)
    assert resumed.num_examples == 2 * SHARD
    assert not shard_data_path(path, 2).exists() and not shard_table_path(path, 2).exists()
    assert not list(path.rglob("*.partial"))
    resumed.append(pef_rows(2 * SHARD, 3 * SHARD, RANK, DIM))
    np.testing.assert_array_equal(resumed.finalize().read(), pef_rows(0, 3 * SHARD, RANK, DIM))


@pytest.mark.slow
def test_concurrent_reader_never_sees_half_a_shard(tmp_path):
    path = tmp_path / "s"
    writer = run_build(path, delay=0.02, wait=False)
    seen = []
    deadline = time.time() + 90
    while True:
        if (path / "manifest.json").exists():
            store = open_store(path)
            m = store.num_examples
            assert m % SHARD == 0 or store.status == "finalized"
            if m:
                np.testing.assert_array_equal(store.read(), pef_rows(0, m, RANK, DIM))
                assert store.examples.num_rows == m
            seen.append(m)
            if store.status == "finalized":
                break
        assert time.time() < deadline and (writer.poll() in (None, 0))
        time.sleep(0.01)
    _, errors = writer.communicate()
    assert writer.returncode == 0, errors.decode()
    assert seen == sorted(seen) and seen[-1] == M
    assert len(set(seen)) >= 3  # the reader really ran while shards were being added
