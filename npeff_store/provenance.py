"""Provenance recorded in every artifact's manifest: package versions, Python, the command line and
timestamps."""

from __future__ import annotations

import datetime
import sys
from importlib.metadata import PackageNotFoundError, version

#: packages whose versions are recorded
PROVENANCE_PACKAGES = ("npeff", "numpy", "torch", "numba", "tensorstore", "pyarrow", "transformers")


def package_versions() -> dict:
    versions = {}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def new_provenance(command: str | None = None) -> dict:
    return {
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "command": command if command is not None else " ".join(sys.argv),
        "created": now_iso(),
        "finalized": None,
    }
