"""Cluster habits of the dask.distributed runner: scheduler files, ``$DASK_SCHEDULER_ADDRESS``, a
Client passed in, the workers' npeff version, and a worker lost mid-run (a one-line error, no hang).

Every cluster here is real and listens on 127.0.0.1 only."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import npeff
from npeff.cli.main import cli
from npeff.errors import DecompositionError, InvalidArgumentError
from npeff.ops import decompose
from npeff.ops.stream import make_runner
from npeff.ops.stream.cluster import SCHEDULER_ADDRESS_VARIABLE, cluster_kind, resolve_cluster
from npeff.ops.stream.distributed import result_from_worker
from npeff.store import open_decomposition
from tests import tolerances
from tests.ops.decomposition.helpers import make_store as make_pef_store
from tests.ops.decomposition.helpers import random_pefs
from tests.ops.stream.helpers import make_store, sum_step

SETTINGS = dict(warmup_steps=2, joint_steps=3, warmup_lr=0.05, joint_lr=0.05, dtype="float64")
#: a lost worker must end the run within this many seconds (a nanny restarts it within about one)
LOST_WITHIN_SECONDS = 30


@pytest.fixture
def pef_store(tmp_path):
    return make_pef_store(tmp_path / "pefs", random_pefs(m=14, seed=9), shard=4)


@pytest.fixture
def local_result(pef_store):
    return decompose(pef_store, 3, **SETTINGS)


def in_process_cluster(**kwargs):
    """A scheduler and two single-threaded workers in this process, reached over TCP on 127.0.0.1."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp://", host="127.0.0.1",
                        dashboard_address=None, **kwargs)


def process_cluster(workers=2):
    """Workers in their own processes (each under a nanny that restarts it when it dies)."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None)


def worker_pids(address):
    from distributed import Client

    with Client(address, timeout="20s") as client:
        return client.run(os.getpid)


def assert_same_decomposition(result, expected):
    for name in ("W", "H", "losses"):
        np.testing.assert_allclose(result[name], expected[name], **tolerances.FLOAT64_REDUCED_ELSEWHERE)


def slow_sum_step(state, scale):
    """:func:`sum_step`, a quarter of a second per piece: a pass long enough to lose a worker in."""
    time.sleep(0.25)
    return sum_step(state, scale)


class SlowToStart:
    """An actor whose creation takes ``seconds``."""

    def __init__(self, seconds):
        time.sleep(seconds)


def test_what_a_cluster_string_is(tmp_path):
    existing = tmp_path / "scheduler"
    existing.write_text("{}")
    assert cluster_kind("local:2") == "local"
    assert cluster_kind("tcp://127.0.0.1:8786") == "address"
    assert cluster_kind("127.0.0.1:8786") == "address"
    assert cluster_kind(str(existing)) == "file"  # an existing file, whatever its name
    assert cluster_kind("missing.json") == "file"
    assert cluster_kind("runs/scheduler") == "file"


def test_the_environment_names_the_cluster_when_none_is_given(monkeypatch):
    assert resolve_cluster(None) is None
    monkeypatch.setenv(SCHEDULER_ADDRESS_VARIABLE, " tcp://127.0.0.1:8786 ")
    assert resolve_cluster(None) == "tcp://127.0.0.1:8786"
    assert resolve_cluster("") == "tcp://127.0.0.1:8786"
    assert resolve_cluster("local:2") == "local:2"  # an explicit cluster wins
    monkeypatch.setenv(SCHEDULER_ADDRESS_VARIABLE, "")
    assert resolve_cluster(None) is None


def bad_scheduler_files(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "empty.json").write_text(json.dumps({"type": "Scheduler"}))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "portless.json").write_text(json.dumps({"address": "tcp://127.0.0.1"}))
    return [(str(tmp_path / "missing.json"), "no scheduler file there"),
            (str(tmp_path / "nowhere" / "scheduler"), "no scheduler file there"),
            (str(tmp_path / "broken.json"), "is not a dask scheduler file"),
            (str(tmp_path / "empty.json"), "has no \"address\""),
            (str(tmp_path / "list.json"), "has no \"address\""),
            (str(tmp_path / "portless.json"), "missing port number")]


@pytest.mark.parametrize("address, message", [
    ("scheduler", "missing port number"), ("tcp://host:port", "invalid literal"),
    ("http://127.0.0.1:8786", "unknown address scheme 'http'"), (":8786", "no host"),
    ("local:0", "needs N >= 1")])
def test_a_malformed_address_is_a_one_line_error(address, message):
    with pytest.raises(InvalidArgumentError, match=message) as raised:
        resolve_cluster(address)
    assert "\n" not in str(raised.value)


def test_a_missing_or_malformed_scheduler_file_is_a_one_line_error(tmp_path, monkeypatch):
    for path, message in bad_scheduler_files(tmp_path):
        with pytest.raises(InvalidArgumentError, match=message) as raised:
            resolve_cluster(path)
        assert str(raised.value).startswith(f"--cluster {path}") and "\n" not in str(raised.value)
    monkeypatch.setenv(SCHEDULER_ADDRESS_VARIABLE, "scheduler")
    with pytest.raises(InvalidArgumentError, match=f"^{SCHEDULER_ADDRESS_VARIABLE} 'scheduler' is neither"):
        resolve_cluster(None)
    with pytest.raises(InvalidArgumentError, match="must be local:N, a scheduler file"):
        resolve_cluster(8786)


def test_the_cli_shows_a_bad_scheduler_file_as_one_line(tmp_path, pef_store):
    missing = tmp_path / "scheduler.json"
    result = CliRunner().invoke(cli, ["decompose", str(pef_store.path), "--out", str(tmp_path / "d"), "-C", "2",
                                      "--cluster", str(missing)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: --cluster {missing}: no scheduler file there (a dask scheduler writes it with: "
        f"dask scheduler --scheduler-file {missing})"]
    assert not (tmp_path / "d").exists()  # refused before anything was written


@pytest.mark.slow
def test_a_scheduler_file_runs_the_decomposition_there(tmp_path, pef_store, local_result):
    scheduler_file = tmp_path / "scheduler.json"
    with in_process_cluster(scheduler_kwargs={"scheduler_file": str(scheduler_file)}) as cluster:
        assert json.loads(scheduler_file.read_text())["address"] == cluster.scheduler_address
        remote = decompose(pef_store, 3, cluster=str(scheduler_file), out=tmp_path / "d", **SETTINGS)
        assert "Partition" in cluster.scheduler.task_prefixes  # the passes ran on this cluster
    assert_same_decomposition({"W": remote.W, "H": remote.H, "losses": remote.losses}, local_result)
    assert open_decomposition(tmp_path / "d").meta.cluster == str(scheduler_file)


@pytest.mark.slow
def test_dask_scheduler_address_is_honoured_without_cluster(tmp_path, pef_store, local_result, monkeypatch):
    with in_process_cluster() as cluster:
        monkeypatch.setenv(SCHEDULER_ADDRESS_VARIABLE, cluster.scheduler_address)
        remote = decompose(pef_store, 3, out=tmp_path / "d", **SETTINGS)
        assert "Partition" in cluster.scheduler.task_prefixes
    assert_same_decomposition({"W": remote.W, "H": remote.H, "losses": remote.losses}, local_result)
    assert open_decomposition(tmp_path / "d").meta.cluster == cluster.scheduler_address


@pytest.mark.slow
def test_a_client_is_used_and_left_open(tmp_path, pef_store, local_result):
    from distributed import Client

    scheduler_file = tmp_path / "scheduler.json"
    with in_process_cluster(scheduler_kwargs={"scheduler_file": str(scheduler_file)}) as cluster:
        with Client(cluster.scheduler_address, timeout="20s") as client:
            remote = decompose(pef_store, 3, cluster=client, out=tmp_path / "d", **SETTINGS)
            assert client.status == "running"  # ours to close, not npeff's
            assert open_decomposition(tmp_path / "d").meta.cluster == cluster.scheduler_address
            deadline = time.monotonic() + 10
            while cluster.scheduler.tasks and time.monotonic() < deadline:  # the actors are released
                time.sleep(0.05)
            assert not cluster.scheduler.tasks
        runner = make_runner(pef_store, device="cpu", dtype=torch.float64, cluster=str(scheduler_file))
        runner.close()
        assert runner.client.status == "closed"  # what npeff opened, npeff closes
    assert_same_decomposition({"W": remote.W, "H": remote.H, "losses": remote.losses}, local_result)


@pytest.mark.slow
def test_workers_with_another_npeff_are_refused(pef_store, monkeypatch):
    installed = npeff.__version__
    with process_cluster(workers=1) as cluster:
        worker = next(iter(worker_pids(cluster.scheduler_address)))
        monkeypatch.setattr(npeff, "__version__", "0.0.0+client")  # this process only: the worker keeps its own
        with pytest.raises(InvalidArgumentError) as raised:
            decompose(pef_store, 2, cluster=cluster.scheduler_address, **SETTINGS)
    message = str(raised.value)
    assert message.startswith("the dask workers must run npeff 0.0.0+client, as this process does: ")
    assert f"{worker} has npeff {installed}" in message and "\n" not in message


@pytest.mark.slow
def test_a_worker_that_cannot_import_npeff_is_refused(tmp_path, pef_store):
    shadow = tmp_path / "shadow" / "npeff"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("no npeff on this worker")\n')
    with process_cluster(workers=1) as cluster:
        environment = dict(os.environ, PYTHONPATH=str(shadow.parent))  # found before the installed npeff
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                                   "--no-nanny", "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
                                  env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            from distributed import Client

            with Client(cluster.scheduler_address, timeout="20s") as client:
                client.wait_for_workers(2, timeout=60)
            with pytest.raises(InvalidArgumentError, match="cannot import npeff \\(.*no npeff on this worker") as raised:
                decompose(pef_store, 2, cluster=cluster.scheduler_address, **SETTINGS)
        finally:
            worker.kill()
            worker.wait(timeout=30)
    assert raised.value.args[0].count("cannot import npeff") == 1 and "\n" not in str(raised.value)


@pytest.mark.slow
def test_a_worker_lost_mid_pass_is_a_one_line_error(tmp_path):
    store, _ = make_store(tmp_path / "s")
    with process_cluster() as cluster:
        pids = worker_pids(cluster.scheduler_address)
        victim = sorted(pids)[0]
        runner = make_runner(store, device="cpu", dtype=torch.float64, cluster=cluster.scheduler_address)
        try:
            runner.start({"acc": torch.zeros(11, dtype=torch.float64)})
            killer = threading.Timer(0.2, os.kill, (pids[victim], signal.SIGKILL))
            began = time.monotonic()
            killer.start()
            with pytest.raises(DecompositionError) as raised:
                runner.run_pass(slow_sum_step, 1.0)
            assert time.monotonic() - began < LOST_WITHIN_SECONDS
            killer.join()
            with pytest.raises(DecompositionError):  # and so is every later call
                runner.run_pass(sum_step, 1.0)
        finally:
            runner.close()
    message = str(raised.value)
    assert message.startswith(f"lost the dask worker {victim} mid-run (")
    assert "npeff decompose ... --out SAME --resume" in message and "\n" not in message


@pytest.mark.slow
def test_a_hung_worker_ends_the_run_when_the_scheduler_drops_it(tmp_path):
    """A stopped worker answers nothing: the run ends once the scheduler drops it (worker-ttl)."""
    import dask
    from distributed import LocalCluster

    store, _ = make_store(tmp_path / "s")
    with dask.config.set({"distributed.scheduler.worker-ttl": "2s"}), \
            LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address=None) as cluster:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                                   "--no-nanny", "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
                                  env=dict(os.environ, PYTHONPATH=root), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # no nanny to kill it for us
        try:
            runner = make_runner(store, device="cpu", dtype=torch.float64, cluster=cluster.scheduler_address)
            try:
                runner.start({"acc": torch.zeros(11, dtype=torch.float64)})
                threading.Timer(0.2, os.kill, (worker.pid, signal.SIGSTOP)).start()
                began = time.monotonic()
                with pytest.raises(DecompositionError, match="lost the dask worker tcp://127.0.0.1:"):
                    runner.run_pass(slow_sum_step, 1.0)
                assert time.monotonic() - began < LOST_WITHIN_SECONDS
            finally:
                runner.close()
        finally:
            worker.kill()
            worker.wait(timeout=30)


@pytest.mark.slow
def test_a_worker_lost_while_its_actor_starts_does_not_hang():
    """An actor bound to one worker waits for that worker forever once it is gone: not here."""
    from distributed import Client

    with process_cluster() as cluster, Client(cluster.scheduler_address, timeout="20s") as client:
        pids = client.run(os.getpid)
        victim = sorted(pids)[0]
        future = client.submit(SlowToStart, 3.0, workers=[victim], allow_other_workers=False, actor=True, pure=False)
        threading.Timer(0.5, os.kill, (pids[victim], signal.SIGKILL)).start()
        began = time.monotonic()
        with pytest.raises(DecompositionError, match=f"lost the dask worker {victim} mid-run"):
            result_from_worker(client, future, victim)
        assert time.monotonic() - began < LOST_WITHIN_SECONDS
        assert future.status == "pending"  # what distributed does: it would have waited for ever


@pytest.mark.slow
def test_a_decomposition_that_lost_a_worker_resumes_from_its_checkpoint(tmp_path, pef_store, monkeypatch):
    from npeff.ops.decomposition import driver

    settings = dict(SETTINGS, joint_steps=6)
    reference = decompose(pef_store, 3, **settings)
    save_checkpoint = driver.save_checkpoint
    with process_cluster() as cluster:
        pids = worker_pids(cluster.scheduler_address)
        victim = sorted(pids)[-1]

        def save_then_lose_a_worker(*args, **kwargs):
            save_checkpoint(*args, **kwargs)
            if victim in pids:  # once
                os.kill(pids.pop(victim), signal.SIGKILL)

        monkeypatch.setattr(driver, "save_checkpoint", save_then_lose_a_worker)
        began = time.monotonic()
        with pytest.raises(DecompositionError, match=f"lost the dask worker {victim} mid-run"):
            decompose(pef_store, 3, out=tmp_path / "run", checkpoint_every=2, cluster=cluster.scheduler_address,
                      **settings)
        assert time.monotonic() - began < LOST_WITHIN_SECONDS
    monkeypatch.setattr(driver, "save_checkpoint", save_checkpoint)
    assert (tmp_path / "run" / "checkpoint").is_dir()
    resumed = decompose(pef_store, 3, out=tmp_path / "run", resume=True, checkpoint_every=2, **settings)
    assert_same_decomposition({"W": resumed.W, "H": resumed.H, "losses": resumed.losses}, reference)
