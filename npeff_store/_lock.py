"""One writer per output: an advisory lock on a hidden file beside the output directory.

Two runs into one ``--out`` would otherwise clobber each other's files (checkpoints under one
staging name, the later result silently replacing the earlier). The lock is ``fcntl.flock`` on
``.{name}.lock`` next to ``name``: the kernel drops it when its process ends, however it ends, so
a lock left by a killed run is stale by construction and the next run simply takes it. The file
holds the holder's host and pid, for the message a second run gets.

Within one process the lock is re-entrant per output (a library user who writes the same
directory twice in a row, or a writer that locks and then calls a helper that locks again), and
counted: it is released when every holder has released it. Locks do not work across machines on
some network file systems (NFS without lockd); a shared output there is the user's to serialise.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
from pathlib import Path
from typing import Iterator

from npeff.errors import OutputExistsError
from npeff.store._files import refuse_path_below_file
from npeff.store.location import refuse_url_output

_held: dict[Path, list] = {}  # resolved lock path -> [file descriptor, count]
_guard = threading.Lock()


class OutputLockedError(OutputExistsError):
    """Another run is writing the same output right now."""


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of ``output``: ``.{name}.lock`` in the same parent directory."""
    output = Path(output).absolute()
    return output.with_name(f".{output.name}.lock")


def acquire_output_lock(output: str | os.PathLike, what: str = "output") -> Path:
    """Take the write lock of ``output`` (creating its parent directory if needed).

    Returns:
        the lock file's path, to give to :func:`release_output_lock`.

    Raises:
        OutputLockedError: another process holds it (its host and pid are named).
        InvalidArgumentError: ``output`` is a URL (outputs are local directories).
    """
    refuse_url_output(output, what)
    refuse_path_below_file(output, what)
    path = lock_path(output)
    with _guard:
        key = path.resolve() if path.parent.exists() else path
        if key in _held:
            _held[key][1] += 1
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        key = path.resolve()
        while True:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(descriptor)
                os.close(descriptor)
                raise OutputLockedError(
                    f"another npeff run ({holder}) is writing the {what} {Path(output)} now; wait for it "
                    f"to finish or choose another output") from None
            # the file may have been unlinked by a holder that released it between open and flock
            try:
                same = os.path.samestat(os.fstat(descriptor), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(descriptor)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{socket.gethostname()} pid {os.getpid()}\n".encode())
        _held[key] = [descriptor, 1]
        return key


def release_output_lock(key: Path) -> None:
    """Release one hold of the lock taken by :func:`acquire_output_lock` (the last removes the file)."""
    with _guard:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[key]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(key)
        os.close(entry[0])


@contextlib.contextmanager
def output_lock(output: str | os.PathLike, what: str = "output") -> Iterator[None]:
    """Hold the write lock of ``output`` for the ``with`` block (see :func:`acquire_output_lock`)."""
    key = acquire_output_lock(output, what)
    try:
        yield
    finally:
        release_output_lock(key)


def _read_holder(descriptor: int) -> str:
    try:
        text = os.pread(descriptor, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "unknown process"
