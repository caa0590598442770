"""A store as an ``xarray.Dataset``: the tensor (lazy, through dask) with the example table's
per-example columns as variables along ``example``."""

from __future__ import annotations

from npeff.errors import BackendUnavailableError
from npeff.store._layout import DIMENSION_NAMES

#: the table columns with one value per example (``probs`` has one per class and is left out)
SCALAR_COLUMNS = ("source_id", "text", "label", "prediction", "pef_norm", "rank", "status")


def store_dataset(store):
    """``xarray.Dataset`` of ``store``: ``pefs[example, row, feature]`` float32 read lazily shard by
    shard, the scalar table columns as ``[example]`` variables (nulls: NaN for numbers, None for
    strings), ``example`` indexed by ``example_index``, and npeff's description in ``attrs``.

    Memory: the table's scalar columns; the tensor is read when computed.

    Raises:
        BackendUnavailableError: xarray is not installed.
    """
    try:
        import xarray as xr
    except ImportError:
        raise BackendUnavailableError("PefStore.to_xarray needs xarray: pip install 'npeff[xarray]'") from None
    table = store.examples
    variables = {"pefs": (DIMENSION_NAMES, store.to_dask())}
    for name in SCALAR_COLUMNS:
        variables[name] = (("example",), table.column(name).to_pandas().to_numpy())
    attrs = {"npeff_url": store.url, "kind": store.config.kind, "rank": store.rank, "dim": store.dim,
             "fingerprint": store.fingerprint, "content_id": store.content_id}
    return xr.Dataset(variables, coords={"example": table.column("example_index").to_numpy()}, attrs=attrs)
