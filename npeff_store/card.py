"""The dataset card (``README.md``) of a Hugging Face export of a PEF store."""

from __future__ import annotations

from npeff.store.info import store_info
from npeff.store.manifest import canonical_json
from npeff.store.reader import PefStore


def dataset_card(store: PefStore) -> str:
    """The ``README.md`` of an export: YAML front matter that ``datasets`` reads (the Parquet
    files of the train split), then what the store holds and how to load it without npeff."""
    info = store_info(store)
    name = store.path.name
    return f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
tags:
- npeff
- per-example-fisher
- interpretability
pretty_name: "{name}: NPEFF {info['kind']} store"
---

# {name}

Per-example Fisher matrices in low-rank form (`{info['kind']}`), exported from an
[npeff](https://pypi.org/project/npeff/) store.

- Examples: {info['num_examples']:,}; each PEF is `G[i]` of shape `[{info['rank']}, {info['dim']}]`
  ({info['dtype']} on disk), zero rows past the example's rank.
- Projection: `{canonical_json(info['projection'])}`
- Compatibility fingerprint: `{info['fingerprint']}`
- Model: `{canonical_json(info['model'])}`
- PEF spec: `{canonical_json(info['pef_spec'])}`

## Files

- `data/train-*.parquet`: one row per example (`example_index`, `source_id`, `text`, `label`,
  `prediction`, `probs`, `pef_norm`, `rank`, `status`). Rows whose `status` is not `ok` hold no
  valid PEF.
- `pefs/`: the tensor `G[m, r, d]` as a zarr v3 array (sharded, crc32c-checked).
- `npeff_manifest.json`: the full npeff manifest (parameter layout, provenance, checksums).

## Loading

```python
import datasets, tensorstore as ts
table = datasets.load_dataset("parquet", data_files="data/train-*.parquet", split="train")
G = ts.open({{"driver": "zarr3", "kvstore": {{"driver": "file", "path": "pefs"}}}}).result()
first = G[0].read().result()   # [{info['rank']}, {info['dim']}]
```
"""
