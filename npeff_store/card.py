"""A store's dataset card (``STORE/README.md``, ``npeff card``): the store is itself the dataset to
share. Its YAML front matter (``huggingface_hub.DatasetCardData``) tells the Hub and ``datasets``
where the example table is and records what the store holds; the body says how to load it with
npeff, ``datasets``, zarr, TensorStore and xarray."""

from __future__ import annotations

import os
from pathlib import Path

from npeff.errors import InvalidArgumentError
from npeff.store import _files
from npeff.store._layout import CARD, EXAMPLES, PEFS
from npeff.store.info import store_info
from npeff.store.manifest import canonical_json
from npeff.store.reader import PefStore, open_store


def card_data(store: PefStore, name: str):
    """The card's metadata: a ``huggingface_hub.DatasetCardData`` (its YAML is written by a YAML
    library, so any name or model id is quoted as needed)."""
    from huggingface_hub import DatasetCardData

    info = store_info(store)
    return DatasetCardData(
        pretty_name=f"{name}: NPEFF {info['kind']} store",
        tags=["npeff", "per-example-fisher", "interpretability"],
        configs=[{"config_name": "default",
                  "data_files": [{"split": "train", "path": f"{EXAMPLES}/part-*.parquet"}]}],
        npeff={"format": store.manifest["format"], "kind": info["kind"], "num_examples": info["num_examples"],
               "rank": info["rank"], "dim": info["dim"], "dtype": info["dtype"],
               "fingerprint": info["fingerprint"], "content_id": store.content_id,
               "projection": info["projection"], "model": info["model"], "pef_spec": info["pef_spec"]},
    )


def dataset_card(store: PefStore, name: str | None = None) -> str:
    """The text of ``README.md`` for ``store`` (``name`` defaults to the store's folder name)."""
    name = name or Path(str(store.url).rstrip("/")).name
    info = store_info(store)
    yaml = card_data(store, name).to_yaml()
    title = name.replace("\n", " ")
    return f"""---
{yaml}
---

# {title}

Per-example Fisher matrices in low-rank form (`{info['kind']}`), written by
[npeff](https://pypi.org/project/npeff/).

- Examples: {info['num_examples']:,}; each PEF is `G[i]` of shape `[{info['rank']}, {info['dim']}]`
  ({info['dtype']} on disk), zero rows past the example's rank.
- Projection: `{canonical_json(info['projection'])}` (recomputable from its seed)
- Compatibility fingerprint: `{info['fingerprint']}`; content id: `{store.content_id}`
- Model: `{canonical_json(info['model'])}`

## Files

- `manifest.json`: what the store is (configuration, parameter layout, provenance, checksums of every shard).
- `{PEFS}/`: the tensor `G[m, r, d]`, a sharded zarr v3 array (crc32c-checked chunks), dims
  `example, row, feature`; `zarr.json` at the root makes the store a zarr group.
- `{EXAMPLES}/part-*.parquet`: one row per example (`example_index`, `source_id`, `text`, `label`,
  `prediction`, `probs`, `pef_norm`, `rank`, `status`). Rows whose `status` is not `ok` hold no valid PEF.

## Loading

Replace `STORE` by this folder, or by a URL (`hf://datasets/ORG/NAME`, `s3://...`, `https://...`).

```python
import npeff.store
store = npeff.store.open_store("STORE")          # checked reads, the table, to_dask(), to_xarray()
G = store.read(0, 8)                              # [8, {info['rank']}, {info['dim']}] float32

import datasets                                   # the example table
table = datasets.load_dataset("STORE", split="train")

import xarray, zarr                               # the tensor, lazily
ds = xarray.open_zarr("STORE")                    # ds.pefs: (example, row, feature)
G = zarr.open_group("STORE", mode="r")["{PEFS}"]

import tensorstore as ts
G = ts.open({{"driver": "zarr3", "kvstore": "file://STORE/{PEFS}/"}}).result()
```

`npeff verify STORE` checks every byte against the manifest's checksums.
"""


def write_card(path: str | os.PathLike, *, name: str | None = None) -> Path:
    """Write (or replace) the dataset card ``README.md`` of the local, finalized store at ``path``.

    Raises:
        InvalidArgumentError: the store is remote, in the Hub's cache, or still being built.
    """
    store = open_store(path)
    local = store.location.local
    if local is None or store.revision is not None:
        raise InvalidArgumentError(f"npeff card writes into a local store; {store.url} is not one "
                                   f"(write the card where the store was built, then upload it)")
    if store.status != "finalized":
        raise InvalidArgumentError(f"{store.path} is still being built; finalize it before writing its card")
    target = local / CARD
    _files.atomic_write_bytes(target, dataset_card(store, name).encode("utf-8"))
    return target
