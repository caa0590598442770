"""Where a store lives, for reading: a local directory, ``file://``, ``http(s)://``, ``s3://``,
``gs://`` or ``hf://datasets/ORG/NAME[@REVISION][/SUBDIR]``.

A :class:`StoreLocation` reads a store's files by name through a TensorStore key-value store (the
same driver, retries and credentials TensorStore uses for the tensor), so one code path serves
every scheme. The Hugging Face Hub is read through ``huggingface_hub``: the store's files are
downloaded into its cache (``HF_HUB_CACHE``), the revision is pinned to the commit it resolves to,
and ``HF_HUB_OFFLINE=1`` reads the cache only.

Object stores take their settings from the environment: for ``s3://``, ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` (an S3-compatible server), ``AWS_REGION`` or ``AWS_DEFAULT_REGION``, and the
usual AWS credentials; for ``gs://``, Google's application default credentials. Writing is local
only: a URL given as an output is refused (:func:`refuse_url_output`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

from npeff.errors import InvalidArgumentError, StoreNotFoundError, first_line

#: ``scheme://`` at the start of a location (Windows drive letters have no ``//``)
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: the schemes :func:`parse_location` reads
SCHEMES = ("file", "http", "https", "s3", "gs", "hf")
_FOLDED_URL = re.compile(r"^(?:%s):/" % "|".join(SCHEMES), re.IGNORECASE)
_HF = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>[^/]+))?(?:/(?P<subdir>.*))?$")
_READ_BLOCK = 1 << 24


class StoreUnreachableError(StoreNotFoundError):
    """A remote store could not be read (network, permissions, a server error)."""


#: set once this process has opened a network kvstore (see :func:`network_transport_used`)
_NETWORK_USED = []


def network_transport_used() -> bool:
    """Whether this process opened a TensorStore network kvstore (``http``, ``s3``, ``gcs``).

    TensorStore's HTTP transport can abort the interpreter while it shuts down ("terminate called
    without an active exception", google/tensorstore#275); the ``npeff`` command then ends with
    ``os._exit`` once its output is flushed, skipping the finalisation that crashes.
    """
    return bool(_NETWORK_USED)


def is_url(location: str | os.PathLike) -> bool:
    """Whether ``location`` is written as a URL (``scheme://...``) rather than a local path."""
    return isinstance(location, str) and _URL.match(location) is not None


def refuse_url_output(location: str | os.PathLike, what: str) -> None:
    """Outputs are local directories: a URL would otherwise become a folder named ``s3:``.

    Also catches a URL already turned into a :class:`Path` (which folds ``//`` into ``/``).

    Raises:
        InvalidArgumentError: ``location`` is a URL (``file://`` included: give the path).
    """
    if is_url(location) or _FOLDED_URL.match(os.fspath(location)):
        raise InvalidArgumentError(f"npeff writes a {what} only to a local directory, not to {location}; write it "
                                   f"locally, then upload it (see the README, \"Sharing a store\")")


@dataclass(frozen=True)
class StoreLocation:
    """A store's root, readable file by file.

    Attributes:
        url: where the store is, as recorded by decompositions: an absolute local path, or a URL
            (for the Hub, pinned to the resolved commit).
        kvstore: the TensorStore key-value store spec of the root (its ``path`` ends with ``/``).
        local: the local directory holding the store (a Hub snapshot in the cache included), or
            None for a store read over the network.
        revision: the commit a Hub location resolved to (None elsewhere).
    """

    url: str
    kvstore: dict
    local: Path | None = None
    revision: str | None = None
    _handle: list = field(default_factory=list, compare=False, repr=False)

    @property
    def is_remote(self) -> bool:
        """Whether reads go over the network (not a local directory nor a Hub snapshot)."""
        return self.local is None

    def child(self, name: str) -> dict:
        """The kvstore spec of the directory ``name`` below the root (e.g. the tensor's ``pefs``)."""
        spec = dict(self.kvstore)
        spec["path"] = spec.get("path", "") + name.strip("/") + "/"
        return spec

    def describe(self, name: str) -> str:
        """``name`` below the root, for messages."""
        return f"{self.url.rstrip('/')}/{name}"

    def _kvstore(self):
        if not self._handle:
            import tensorstore as ts

            if self.kvstore["driver"] in ("http", "s3", "gcs"):
                _NETWORK_USED.append(True)
            try:
                self._handle.append(ts.KvStore.open(self.kvstore).result())
            except ValueError as error:
                raise StoreUnreachableError(f"cannot open {self.url}: {first_line(error)}") from None
        return self._handle[0]

    def read(self, name: str, byte_range: slice | None = None) -> bytes | None:
        """The bytes of the file ``name`` below the root (a ``byte_range`` of them), None when missing.

        Raises:
            StoreUnreachableError: the read failed (network, permissions, a server error).
        """
        try:
            result = self._kvstore().read(name, byte_range=byte_range).result()
        except ValueError as error:
            raise StoreUnreachableError(f"cannot read {self.describe(name)}: {first_line(error)}") from None
        return None if result.state == "missing" else bytes(result.value)

    def read_blocks(self, name: str) -> Iterator[bytes]:
        """The file ``name`` in blocks of 16 MiB (ranged reads: memory is one block).

        Raises:
            FileNotFoundError: the file is missing.
            StoreUnreachableError: a read failed.
        """
        start = 0
        while True:
            try:
                block = self.read(name, slice(start, start + _READ_BLOCK))
            except StoreUnreachableError as error:
                if "OUT_OF_RANGE" not in str(error):
                    raise
                block = self.read(name, slice(start, None)) if start == 0 else _tail(self, name, start)
                if block:
                    yield block
                return
            if block is None:
                if start == 0:
                    raise FileNotFoundError(self.describe(name))
                return
            yield block
            start += len(block)

    def names(self) -> list[str] | None:
        """The top-level names below the root (files and directories), None where the scheme
        cannot list (plain HTTP)."""
        if self.local is not None:
            return sorted(entry.name for entry in self.local.iterdir())
        if self.kvstore["driver"] == "http":
            return None
        try:
            keys = self._kvstore().list().result()
        except ValueError as error:
            raise StoreUnreachableError(f"cannot list {self.url}: {first_line(error)}") from None
        return sorted({key.decode().split("/", 1)[0] for key in keys})

    def __reduce__(self):
        # pickles as its url: the other side resolves it again (a Hub url is pinned to its commit)
        return parse_location, (self.url,)


def parse_location(location: str | os.PathLike) -> StoreLocation:
    """The :class:`StoreLocation` of a local path or a URL (see the module docstring for schemes).

    Raises:
        InvalidArgumentError: a URL of another scheme, or a malformed one.
        StoreNotFoundError: a Hub repository or revision that cannot be found (or, offline, is not
            in the cache).
    """
    if not is_url(location):
        if _FOLDED_URL.match(os.fspath(location)):
            raise InvalidArgumentError(f"{location} looks like a URL turned into a path (its // folded): "
                                       f"give the URL as a string")
        local = Path(location)
        return StoreLocation(str(local.absolute()), {"driver": "file", "path": _dir(str(local.absolute()))}, local)
    text = str(location)
    scheme = _URL.match(text).group(1).lower()
    parts = urlsplit(text)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidArgumentError(f"a file:// URL names a local path (file:///abs/path), got {text}")
        return parse_location(unquote(parts.path))
    if scheme in ("http", "https"):
        if not parts.netloc:
            raise InvalidArgumentError(f"{text} names no server")
        spec = {"driver": "http", "base_url": f"{scheme}://{parts.netloc}", "path": _dir(parts.path or "/"),
                "context": _retries("http")}
        return StoreLocation(text.rstrip("/"), spec)
    if scheme in ("s3", "gs"):
        if not parts.netloc:
            raise InvalidArgumentError(f"{text} names no bucket ({scheme}://BUCKET/PATH)")
        spec = {"driver": "s3" if scheme == "s3" else "gcs", "bucket": parts.netloc,
                "path": _dir(parts.path.lstrip("/")) if parts.path.strip("/") else "",
                "context": _retries("s3" if scheme == "s3" else "gcs")}
        if scheme == "s3":
            spec.update(_s3_settings())
        return StoreLocation(text.rstrip("/"), spec)
    if scheme == "hf":
        return _hub_location(text)
    raise InvalidArgumentError(f"cannot read a store from {text}: npeff reads local paths and "
                               f"{', '.join(s + '://' for s in SCHEMES)} URLs")


def _dir(path: str) -> str:
    return path if path.endswith("/") else path + "/"


def _retries(driver: str) -> dict:
    """TensorStore's retry policy for ``driver``: ``NPEFF_REMOTE_RETRIES`` attempts (default 6),
    backing off from 0.25 s to 8 s, so an unreachable server fails in about 20 s, not minutes."""
    value = os.environ.get("NPEFF_REMOTE_RETRIES", "6")
    try:
        attempts = int(value)
    except ValueError:
        raise InvalidArgumentError(f"NPEFF_REMOTE_RETRIES must be a whole number, got {value!r}") from None
    if not 1 <= attempts <= 100:
        raise InvalidArgumentError(f"NPEFF_REMOTE_RETRIES must lie in [1, 100], got {attempts}")
    return {f"{driver}_request_retries": {"max_retries": attempts, "initial_delay": "0.25s", "max_delay": "8s"}}


def _s3_settings() -> dict:
    """The S3 endpoint and region from the AWS environment variables (the SDKs' convention)."""
    settings = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        settings["endpoint"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        settings["aws_region"] = region
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        settings["aws_credentials"] = {"type": "environment"}
    return settings


def _hub_location(text: str) -> StoreLocation:
    """A Hub dataset repository (or a folder of it) downloaded into the cache, its revision pinned."""
    match = _HF.match(text.rstrip("/"))
    if match is None:
        raise InvalidArgumentError(f"a Hub store is hf://datasets/ORG/NAME[@REVISION][/SUBDIR], got {text}")
    repo, revision = match.group("repo"), unquote(match.group("revision") or "main")
    subdir = (match.group("subdir") or "").strip("/")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    from npeff.progress import third_party_bars_off_unless_wanted

    third_party_bars_off_unless_wanted()

    try:
        snapshot = Path(snapshot_download(repo, repo_type="dataset", revision=revision,
                                          allow_patterns=[f"{subdir}/**"] if subdir else None))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as error:
        raise StoreNotFoundError(f"cannot open {text}: {first_line(error)} (is it in the cache, HF_HUB_CACHE, "
                                 f"with HF_HUB_OFFLINE=1?)") from None
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise StoreUnreachableError(f"cannot open {text}: {first_line(error)}") from None
    commit = snapshot.name  # the cache keeps each snapshot under the commit it resolved to
    root = snapshot / subdir if subdir else snapshot
    url = f"hf://datasets/{repo}@{commit}" + (f"/{subdir}" if subdir else "")
    return StoreLocation(url, {"driver": "file", "path": _dir(str(root))}, root, commit)


def _tail(location: StoreLocation, name: str, start: int) -> bytes:
    """The bytes of ``name`` from ``start`` to its end (empty when ``start`` is its size)."""
    try:
        return location.read(name, slice(start, None)) or b""
    except StoreUnreachableError as error:
        if "OUT_OF_RANGE" in str(error):
            return b""
        raise


