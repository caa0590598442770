"""The optional parts of npeff (``pip install 'npeff[EXTRA]'``) and the one-line message for a
command that needs one that is not installed.

The core install reads, verifies and shares stores, decomposes them and analyses the results;
``build`` adds building stores from models (transformers, datasets, accelerate, gguf), ``report``
the HTML report (jinja2, matplotlib), ``cuda`` the GPU kernels and clusters (numba-cuda,
dask-cuda), ``xarray`` the xarray view of a store.
"""

from __future__ import annotations

#: top-level module -> the extra that installs it
EXTRA_OF_MODULE = {
    "transformers": "build", "datasets": "build", "accelerate": "build", "gguf": "build",
    "jinja2": "report", "matplotlib": "report",
    "numba_cuda": "cuda", "dask_cuda": "cuda",
    "xarray": "xarray", "zarr": "xarray",
}


def extra_for(error: ImportError) -> str | None:
    """The extra that provides the module ``error`` could not import (None for any other module)."""
    name = getattr(error, "name", None) or ""
    if name.startswith("numba.cuda"):
        return "cuda"
    return EXTRA_OF_MODULE.get(name.split(".")[0])


def missing_extra_message(error: ImportError, what: str = "this") -> str | None:
    """``"{what} needs MODULE, which is not installed: pip install 'npeff[EXTRA]'"``, or None when
    the missing module is not one of an extra's."""
    extra = extra_for(error)
    if extra is None:
        return None
    return f"{what} needs {error.name.split('.')[0]}, which is not installed: pip install 'npeff[{extra}]'"
