"""Sizes checked against the machine before anything is allocated.

An impossible request (``-C 10**9``, a manifest claiming 10^15 examples, a projection of 2^30
entries into 4096 rows) would otherwise die deep inside numpy or torch with a message about
terabytes, after files were written. The check is against the physical memory: what is
available changes from moment to moment and swap can absorb some excess, but nothing larger than
the whole machine can ever succeed.
"""

from __future__ import annotations

import os

from npeff.errors import InvalidArgumentError


def physical_memory_bytes() -> int | None:
    """Bytes of physical memory of this machine (None where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(count: float) -> str:
    """``count`` bytes for people: ``3.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(count) < 1024 or unit == "PiB":
            return f"{count:.3g} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.3g} PiB"  # pragma: no cover


def require_memory(nbytes: float, what: str, hint: str = "") -> None:
    """Refuse ``what`` when it needs more than this machine's physical memory.

    Args:
        nbytes: the bytes it would hold at once.
        what: a noun phrase for the message ("W [m, C] of 480 x 1000000000 float32").
        hint: how to make it fit (appended to the message).

    Raises:
        InvalidArgumentError: one line with the size needed and the size there is.
    """
    total = physical_memory_bytes()
    if total is not None and nbytes > total:
        raise InvalidArgumentError(f"{what} needs {format_bytes(nbytes)}, more than this machine's "
                                   f"{format_bytes(total)} of memory" + (f"; {hint}" if hint else ""))
