"""File helpers shared by every on-disk format: staged atomic writes (of files and of whole
directories), output directories that are never clobbered unasked, JSON that maps parse errors to
:class:`CorruptError`, content checksums."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

import xxhash

from npeff.errors import CorruptError, InvalidArgumentError, NotFoundError, OutputExistsError
from npeff.store.location import is_url, refuse_url_output

CHECKSUM_ALGORITHM = "xxh3_128"
_READ_BLOCK = 1 << 24
PARTIAL_SUFFIX = ".partial"


def staging_name(path: Path) -> Path:
    """A fresh hidden name beside ``path`` for staging it: ``.{name}.{random}.partial``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}{PARTIAL_SUFFIX}")


def remove_stale_staging(path: Path) -> None:
    """Remove what killed writers left staging ``path`` (``.{name}.*.partial`` beside it)."""
    for stale in path.parent.glob(f".{path.name}.*{PARTIAL_SUFFIX}"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = True) -> Iterator[IO]:
    """Open a uniquely named temporary file beside ``path``; on success it replaces ``path``.

    Readers see the old file or the new one, never half of one. On an error the temporary file
    is removed and ``path`` is untouched. The name ends in ``.partial`` (ignored by stores). The
    file gets the permissions of any new file (the process's umask applies).
    """
    path = Path(path)
    staging = staging_name(path)
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    handle = os.fdopen(descriptor, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    try:
        with handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(staging, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staging)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb", fsync=fsync) as handle:
        handle.write(data)


def atomic_write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(payload, indent=1, sort_keys=False) + "\n").encode())


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, replace: bool = False) -> Iterator[Path]:
    """A uniquely named temporary directory beside ``path`` to fill; on success it becomes ``path``.

    ``path`` must then be absent or an empty directory; with ``replace`` an existing ``path`` is
    removed just before the rename (the one moment with nothing at ``path``). On an error the
    temporary directory is removed and ``path`` is untouched. The name ends in ``.partial``; what an
    earlier, killed writer left staging ``path`` is removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    staging = staging_name(path)
    os.mkdir(staging, 0o777)
    try:
        yield staging
        if replace and path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_json(path: str | os.PathLike, *, what: str = "file", missing: type[NotFoundError] = NotFoundError,
              corrupt: type[CorruptError] = CorruptError) -> dict:
    """The JSON object in ``path``.

    Raises:
        missing (a :class:`NotFoundError`): ``path`` does not exist.
        corrupt (a :class:`CorruptError`): it is not valid JSON or not an object (the message names
            the file).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise missing(f"{what} {path} does not exist") from None
    return parse_json(data, where=str(path), corrupt=corrupt)


def parse_json(data: bytes, *, where: str, corrupt: type[CorruptError] = CorruptError) -> dict:
    """The JSON object in ``data`` (the bytes of the file ``where``, named in messages).

    Raises:
        corrupt (a :class:`CorruptError`): not UTF-8, not valid JSON or not an object.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise corrupt(f"{where} is not a text file: {error}") from None
    try:
        parsed = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise corrupt(f"{where} is not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise corrupt(f"{where} must hold a JSON object, got {type(parsed).__name__}")
    return parsed


def manifest_format(directory: Path, name: str = "manifest.json") -> str | None:
    """The ``format`` field of ``directory/name`` (None when absent or unreadable): tells which kind
    of npeff artifact a directory holds before anything in it is replaced."""
    try:
        data = json.loads((Path(directory) / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("format") if isinstance(data, dict) else None


def refuse_overlap(output: str | os.PathLike, inputs: Iterable, what: str) -> None:
    """Refuse an output that is, contains or lies inside one of the command's inputs.

    Writing there would replace or pollute what the command reads (a decomposition written over
    its own store, a report inside a store). ``inputs`` are paths (None and URLs are skipped);
    symbolic links are resolved on both sides.

    Raises:
        InvalidArgumentError: naming the output and the input.
    """
    target = Path(output).resolve()
    for given in inputs:
        if given is None or is_url(given):
            continue
        source = Path(given).resolve()
        if target == source:
            relation = "is"
        elif source in target.parents:
            relation = "lies inside"
        elif target in source.parents:
            relation = "contains"
        else:
            continue
        raise InvalidArgumentError(f"the output {output} {relation} the input {given}; "
                                   f"choose a {what} path outside the command's inputs")


def refuse_path_below_file(path: str | os.PathLike, what: str,
                           error: type[OutputExistsError] = OutputExistsError) -> None:
    """Refuse an output whose nearest existing ancestor is a file (``task.yaml/out``)."""
    path = Path(path)
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise error(f"{parent} is a file; the {what} {path} cannot be created below it")
            return


def refuse_resume_with_overwrite(resume: bool, overwrite: bool) -> None:
    """``--resume`` keeps an interrupted output, ``--overwrite`` deletes it: never both."""
    if resume and overwrite:
        raise InvalidArgumentError("--resume continues an interrupted output and --overwrite replaces it; "
                                   "give one of them")


@contextlib.contextmanager
def removed_on_failure_if_new(path: str | os.PathLike, *, keep: Callable[[Path], bool] = lambda _p: False
                              ) -> Iterator[None]:
    """Run the block; when it fails and ``path`` did not exist before it, remove what it left at
    ``path`` (an empty output folder, a store with no committed shard), unless ``keep(path)``
    says it holds work worth resuming (a checkpoint, committed shards)."""
    path = Path(path)
    existed = path.exists() or path.is_symlink()
    try:
        yield
    except BaseException:
        if not existed and path.is_dir() and not path.is_symlink() and not keep(path):
            shutil.rmtree(path, ignore_errors=True)
        raise


def walk_no_links(root: Path) -> Iterator[Path]:
    """Every path below ``root``, deepest first, never descending into a symbolic link."""
    for directory, dirs, files in os.walk(root, topdown=False, followlinks=False):
        for name in (*files, *dirs):
            yield Path(directory, name)


def remove_no_links(path: Path) -> None:
    """Remove ``path``: a link or file is unlinked, a real directory removed with what is below it
    (links inside are unlinked, never followed)."""
    if path.is_symlink() or not path.is_dir():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path)  # rmtree unlinks the links it meets, it does not follow them


def check_output_dir(path: str | os.PathLike, *, what: str, is_ours: Callable[[Path], bool], overwrite: bool,
                     resume: Callable[[Path], bool] | None = None,
                     exists: type[OutputExistsError] = OutputExistsError, inputs: Iterable = ()) -> str:
    """What writing ``what`` into the directory ``path`` will do; refuses to clobber anything unasked.

    Touches nothing: :func:`prepare_output_dir` acts on the answer, and a writer that stages its
    output elsewhere (then renames it into place) checks first with this.

    Args:
        path: the output directory.
        what: a noun for messages ("store", "decomposition", "demo folder").
        is_ours: whether a non-empty directory holds a previous output of this kind (only those
            are ever replaced, and only with ``overwrite``).
        overwrite: replace a previous output of this kind.
        resume: optional; when it returns True for an existing output, that output is kept as it
            is (an interrupted run to continue).
        exists: the :class:`OutputExistsError` subclass to raise (e.g. ``StoreExistsError``).
        inputs: the command's input paths; an output that is, contains or lies inside one is
            refused (:func:`refuse_overlap`).

    Returns:
        ``"create"`` (``path`` is absent or an empty directory: files a killed writer left staging
        do not count), ``"replace"`` (a previous output, with ``overwrite``) or ``"resume"``.

    Raises:
        exists: ``path`` is a file, a non-empty directory that is not ours, or ours without
            ``overwrite`` (nor ``resume``).
    """
    refuse_url_output(path, what)
    refuse_overlap(path, inputs, what)
    path = Path(path)
    if path.is_symlink():
        raise exists(f"{path} is a symbolic link; give the {what} a real directory (npeff never writes "
                     f"or deletes through a link)")
    if path.exists() and not path.is_dir():
        raise exists(f"{path} exists and is a file; give a directory for the {what}")
    refuse_path_below_file(path, what, exists)
    if not path.exists() or all(entry.name.endswith(PARTIAL_SUFFIX) for entry in path.iterdir()):
        return "create"
    if not is_ours(path):
        raise exists(f"{path} exists, is not empty and is not an npeff {what}; refusing to write "
                     f"into it (choose another path or empty it)")
    if overwrite:
        return "replace"
    if resume is not None and resume(path):
        return "resume"
    raise exists(f"a {what} already exists at {path}; pass --overwrite to replace it")


def prepare_output_dir(path: str | os.PathLike, *, what: str, is_ours: Callable[[Path], bool],
                       overwrite: bool, resume: Callable[[Path], bool] | None = None,
                       exists: type[OutputExistsError] = OutputExistsError, inputs: Iterable = ()) -> Path:
    """Make ``path`` a directory to write ``what`` into: empty, or a previous output to resume.

    Arguments and errors as :func:`check_output_dir`; a previous output is removed when it is
    replaced, kept when it is resumed; what killed writers left staging inside it is removed.

    Returns:
        ``path`` as a :class:`Path`, existing.
    """
    refuse_url_output(path, what)
    path = Path(path)
    action = check_output_dir(path, what=what, is_ours=is_ours, overwrite=overwrite, resume=resume,
                              exists=exists, inputs=inputs)
    if action == "replace":
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    for stale in walk_no_links(path):  # deepest first
        if stale.name.endswith(PARTIAL_SUFFIX):
            remove_no_links(stale)
    return path


def blocks_checksum(blocks: Iterable[bytes]) -> str:
    """``xxh3_128`` hex digest of the concatenated ``blocks`` (memory: one block)."""
    digest = xxhash.xxh3_128()
    for block in blocks:
        digest.update(block)
    return digest.hexdigest()


def file_checksum(path: Path) -> str:
    """``xxh3_128`` hex digest of a file's bytes (streamed in 16 MiB blocks)."""
    with open(path, "rb") as handle:
        return blocks_checksum(iter(lambda: handle.read(_READ_BLOCK), b""))


def bytes_checksum(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def directory_size(path: Path) -> int:
    """Total bytes of the regular files below ``path``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total
