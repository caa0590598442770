"""Real servers on 127.0.0.1 for remote stores: a static HTTP server that honours Range requests
(aiohttp, in a subprocess) and an S3-compatible server (moto's server mode, in a thread).

Context managers :func:`serve_http` and :func:`serve_s3` (also used by ``bench/remote.py``);
fixtures ``http_root`` (a folder served at ``http_root.url``) and ``s3_bucket`` (a bucket, with
``upload(folder, prefix)``; the AWS variables point at the server for the test's duration).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

_SERVE = """
import sys
from aiohttp import web
app = web.Application()
app.router.add_static("/", sys.argv[1], show_index=False, follow_symlinks=False)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, timeout: float = 20.0) -> None:
    """Until ``url`` answers (any HTTP status)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def serve_http(root: Path) -> Iterator[str]:
    """Serve the folder ``root`` over HTTP (Range requests honoured); yields its base URL."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", _SERVE, str(root), str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


@contextlib.contextmanager
def serve_s3() -> Iterator[str]:
    """An S3-compatible server (moto) on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        wait_for(f"http://127.0.0.1:{port}/")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str):
    """A boto3 client of the server at ``endpoint`` (any credentials are accepted)."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


#: what the server accepts, as the AWS variables
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "npeff-test", "AWS_SECRET_ACCESS_KEY": "npeff-test-secret",
                    "AWS_REGION": "us-east-1"}


@dataclass
class HttpRoot:
    path: Path
    url: str


@pytest.fixture
def http_root(tmp_path):
    """A folder served over HTTP (with Range requests) at ``http://127.0.0.1:PORT``."""
    root = tmp_path / "served"
    root.mkdir()
    with serve_http(root) as url:
        yield HttpRoot(root, url)


@dataclass
class S3Bucket:
    name: str
    endpoint: str
    client: object

    def upload(self, folder: Path, prefix: str) -> str:
        """Every file below ``folder`` under ``prefix/`` in the bucket; returns ``s3://bucket/prefix``."""
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                self.client.upload_file(str(path), self.name, f"{prefix}/{path.relative_to(folder).as_posix()}")
        return f"s3://{self.name}/{prefix}"

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)


@pytest.fixture(scope="session")
def _s3_server():
    with serve_s3() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(_s3_server, monkeypatch, request):
    """A fresh bucket on the S3-compatible server; the AWS variables point at it."""
    for name, value in dict(TEST_CREDENTIALS, AWS_ENDPOINT_URL=_s3_server).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = s3_client(_s3_server)
    name = f"stores-{abs(hash(request.node.nodeid)) % 10**8}-{os.getpid()}"
    client.create_bucket(Bucket=name)
    return S3Bucket(name, _s3_server, client)
