"""Every command, given an input a user can get wrong, stops with one ``Error:`` line (never a
traceback), deletes nothing it does not own and leaves nothing behind."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from npeff.cli.main import cli
from npeff.store import create_store, open_store
from npeff.store._lock import acquire_output_lock, lock_path, release_output_lock
from tests.fixtures import REVIEWS
from tests.ops.decomposition.helpers import make_store, planted

SHORT = ["-C", "2", "--warmup-steps", "1", "--joint-steps", "2"]
TASK = 'formulation: label-tokens\ntemplate: "review : {text} sentiment :"\nlabels: ["good", "bad"]\nlabel_field: label\n'


def tree(root):
    """Every file below ``root`` with its bytes (what must stay untouched)."""
    found = {}
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, root)] = handle.read()
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_models):
    """A store, a decomposition of it, a folder that is not npeff's, data and task files."""
    root = tmp_path_factory.mktemp("world")
    g, _, _ = planted(m=12, seed=3)
    make_store(root / "store", g, shard=4)
    result = CliRunner().invoke(cli, ["decompose", str(root / "store"), "--out", str(root / "dec"), *SHORT])
    assert result.exit_code == 0, result.output
    (root / "webapp").mkdir()
    (root / "webapp" / "manifest.json").write_text("{}")
    (root / "webapp" / "notes.txt").write_text("precious")
    (root / "file.txt").write_text("a file")
    (root / "task.yaml").write_text(TASK)
    (root / "max_length.yaml").write_text(TASK + "max_length: true\n")
    (root / "latin1.yaml").write_bytes(b"\xff\xfe formulation")
    (root / "empty.jsonl").write_text("")
    rows = [json.dumps(r) for r in REVIEWS]
    (root / "data.jsonl").write_text("\n".join(rows) + "\n")
    (root / "label7.jsonl").write_text("\n".join(rows + [json.dumps({"text": "odd", "label": 7})]) + "\n")
    (root / "nulltext.jsonl").write_text("\n".join([json.dumps({"text": None, "label": 1}), *rows]) + "\n")
    return root, tiny_models["gpt2"]


BUILD = ["build", "{model}", "--task", "{w}/task.yaml", "--dim", "32"]

CASES = {
    # outputs that are, contain or lie inside an input, or are not npeff's of the same kind
    "decompose onto its store": (["decompose", "{w}/store", "--out", "{w}/store", *SHORT, "--overwrite"],
                                 "is the input"),
    "decompose inside its store": (["decompose", "{w}/store", "--out", "{w}/store/pefs/x", *SHORT], "lies inside"),
    "decompose around its store": (["decompose", "{w}/store", "--out", "{w}", *SHORT, "--overwrite"], "contains"),
    "fit onto its store": (["fit", "{w}/dec", "{w}/store", "--out", "{w}/store", "--overwrite", "--steps", "1"],
                           "is the input"),
    "fit onto its decomposition": (["fit", "{w}/dec", "{w}/store", "--out", "{w}/dec", "--overwrite", "--steps", "1"],
                                   "is the input"),
    "merge onto a folder with a manifest": (["merge", "{w}/webapp", "{w}/store", "--overwrite"], "not an npeff store"),
    "merge onto a decomposition": (["merge", "{w}/dec", "{w}/store", "--overwrite"], "not an npeff store"),
    "build onto its model folder": ([*BUILD, "--data", "{w}/data.jsonl", "--out", "{model}", "--overwrite"],
                                    "is the input"),
    "decompose resume with overwrite": (["decompose", "{w}/store", "--out", "{w}/new", *SHORT, "--resume",
                                         "--overwrite"], "give one of them"),
    "build resume with overwrite": ([*BUILD, "--data", "{w}/data.jsonl", "--out", "{w}/new", "--resume",
                                     "--overwrite"], "give one of them"),
    # paths the operating system refuses
    "decompose below a file": (["decompose", "{w}/store", "--out", "{w}/file.txt/x", *SHORT], "is a file"),
    "report below a file": (["report", "{w}/dec", "--out", "{w}/file.txt/r.html"], "file.txt"),
    # arguments
    "a huge seed": (["decompose", "{w}/store", "--out", "{w}/new", *SHORT, "--seed", str(10**30)], "seed"),
    "no steps": (["decompose", "{w}/store", "--out", "{w}/new", "-C", "2", "--warmup-steps", "0",
                  "--joint-steps", "0"], "at least one step"),
    "an infinite memory budget": (["decompose", "{w}/store", "--out", "{w}/new", *SHORT, "--memory-budget", "1e999"],
                                  "memory budget"),
    "a malformed cluster address": (["decompose", "{w}/store", "--out", "{w}/new", *SHORT, "--cluster",
                                     "not-an-address"], "--cluster"),
    "build on an unknown device": ([*BUILD, "--data", "{w}/data.jsonl", "--out", "{w}/new", "--device", "garbage"],
                                   "unknown device"),
    # sizes that cannot fit
    "a billion components": (["decompose", "{w}/store", "--out", "{w}/new", "-C", str(10**9), "--warmup-steps", "1",
                              "--joint-steps", "1"], "more than this machine"),
    "a terabyte projection": ([*BUILD[:-1], str(10**12), "--data", "{w}/data.jsonl", "--out", "{w}/new"],
                              "more than this machine"),
    "a projection check that cannot fit": (["check-projection", "--log2-n", "30", "--rows", "4096"],
                                           "more than this machine"),
    # data and task files
    "an empty data file": ([*BUILD, "--data", "{w}/empty.jsonl", "--out", "{w}/new"], "is empty"),
    "a label outside the classes": ([*BUILD, "--data", "{w}/label7.jsonl", "--out", "{w}/new"],
                                    "outside the 2 classes"),
    "a null text": ([*BUILD, "--data", "{w}/nulltext.jsonl", "--out", "{w}/new"], "is null"),
    "a boolean max_length": ([*BUILD[:3], "{w}/max_length.yaml", *BUILD[4:], "--data", "{w}/data.jsonl", "--out",
                              "{w}/new"], "max_length must be a positive integer"),
    "a task file that is not UTF-8": ([*BUILD[:3], "{w}/latin1.yaml", *BUILD[4:], "--data", "{w}/data.jsonl",
                                       "--out", "{w}/new"], "not UTF-8"),
    "a model folder that is not there": ([*BUILD, "--data", "{w}/data.jsonl", "--out", "{w}/new"], "does not exist"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_user_mistake_is_one_line_and_touches_nothing(world, case):
    root, model = world
    args, message = CASES[case]
    if case == "a model folder that is not there":
        model = str(root / "no-model")
    before = tree(root)
    result = CliRunner().invoke(cli, [a.format(w=root, model=model) for a in args])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and message in lines[-1], result.output
    assert tree(root) == before  # nothing deleted, nothing changed, nothing left behind (no "new")


def test_a_second_writer_of_one_output_is_refused(world, tmp_path):
    root, _ = world
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom npeff.store._lock import acquire_output_lock\n"
         f"acquire_output_lock({str(out)!r})\nprint('held', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = CliRunner().invoke(cli, ["decompose", str(root / "store"), "--out", str(out), *SHORT])
        assert result.exit_code == 1 and "another npeff run" in result.output and f"pid {holder.pid}" in result.output
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # the holder is gone: its lock is stale by construction and the next run takes it
    result = CliRunner().invoke(cli, ["decompose", str(root / "store"), "--out", str(out), *SHORT])
    assert result.exit_code == 0, result.output
    assert not lock_path(out).exists()


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    first = acquire_output_lock(tmp_path / "o")
    second = acquire_output_lock(tmp_path / "o")
    release_output_lock(second)
    assert lock_path(tmp_path / "o").exists()
    release_output_lock(first)
    assert not lock_path(tmp_path / "o").exists()


@pytest.mark.parametrize("linked", ["examples", "pefs/c"])
def test_resuming_never_deletes_through_a_link(tmp_path, linked):
    """A hostile store whose folder is a link out of it: resuming refuses, the outside is intact."""
    spec = dict(rank=2, dim=64, projection={"kind": "external"}, shard_examples=4, chunk_examples=4)
    writer = create_store(tmp_path / "partial", **spec)
    writer.append(np.ones((9, 2, 64), np.float32))  # two shards committed, one buffered: a killed build
    writer.abort()
    outside = tmp_path / "outside"
    (tmp_path / "partial" / linked).rename(outside)
    (outside / "victim.txt").write_text("precious")
    os.symlink(outside, tmp_path / "partial" / linked)
    before = tree(outside)
    with pytest.raises(Exception, match="symbolic link"):
        create_store(tmp_path / "partial", **spec, resume=True)
    assert tree(outside) == before


def test_values_that_overflow_the_storage_are_non_finite(tmp_path):
    g = np.random.default_rng(0).random((8, 2, 64))
    g[3, 0, 0] = 1e39  # finite in float64, inf in float32
    writer = create_store(tmp_path / "s", rank=2, dim=64, projection={"kind": "external"})
    writer.append(g)
    store = writer.finalize()
    statuses = store.examples.column("status").to_pylist()
    assert statuses[3] == "non-finite" and statuses.count("ok") == 7
    assert np.isfinite(store.read()).all()


def test_a_failed_build_leaves_no_store(world, monkeypatch, tmp_path):
    root, model = world
    from npeff.ops.pef import build as build_module

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "s"))

    monkeypatch.setattr(build_module, "batch_pefs", fail)
    result = CliRunner().invoke(cli, [a.format(w=root, model=model) for a in BUILD]
                                + ["--data", str(root / "data.jsonl"), "--out", str(tmp_path / "s")])
    assert result.exit_code == 1 and "the disk is full" in result.output, result.output
    assert not (tmp_path / "s").exists()
    assert open_store(root / "store").num_examples == 12


def test_an_array_header_claiming_terabytes_is_refused_before_allocating(world, tmp_path):
    root, _ = world
    import shutil

    shutil.copytree(root / "dec", tmp_path / "dec")
    with open(tmp_path / "dec" / "W.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 2)})
        handle.write(b"\0" * 64)
    result = CliRunner().invoke(cli, ["top-examples", str(tmp_path / "dec"), "--store", str(root / "store")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "its header claims shape [1000000000000, 2]" in result.output.strip().splitlines()[-1]
