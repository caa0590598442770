"""Describing a PEF store (``npeff info``): a JSON-able summary and its human-readable rendering,
with notes where the store's files contradict its manifest."""

from __future__ import annotations

import collections

from npeff.store import _files
from npeff.store.integrity import read_table_part, tensor_problems
from npeff.store.manifest import canonical_json
from npeff.store.reader import PefStore


def store_info(store: PefStore) -> dict:
    """A JSON-able description of a store: shape, size on disk, spec, provenance, fingerprint, the
    examples' statuses and ``notes``.

    Reads the manifest, the tensor metadata and the example table (one part at a time; not the
    tensor's data). A table part that fails its checks (:func:`~npeff.store.integrity.read_table_part`:
    checksum, schema, row count, ``example_index``, statuses) is not counted and gets a note, as do
    tensor metadata that disagrees with the manifest and statuses that cover fewer examples than
    the manifest holds: the numbers shown never contradict each other silently.
    """
    config = store.config
    statuses, notes = _statuses_and_notes(store)
    layout = config.parameter_layout
    return {
        "path": str(store.path),
        "url": store.url,
        "revision": store.revision,
        "status": store.status,
        "kind": config.kind,
        "num_examples": store.num_examples,
        "rank": config.rank,
        "dim": config.dim,
        "dtype": config.dtype,
        "num_shards": len(store.shards),
        "shard_examples": config.shard_examples,
        "chunk_examples": config.chunk_examples,
        # a remote store's size would take a listing (impossible over plain HTTP): not given
        "size_on_disk": None if store.location.local is None else _files.directory_size(store.location.local),
        "fingerprint": store.fingerprint,
        "projection": config.projection,
        "parameter_layout": None if layout is None else {
            "num_parameters": len(layout.names), "n_total": layout.n_total, "names": list(layout.names)},
        "model": None if config.model is None else config.model.to_dict(),
        "pef_spec": config.pef_spec,
        "example_status": dict(statuses),
        "provenance": store.manifest["provenance"],
        "notes": notes,
    }


def _statuses_and_notes(store: PefStore) -> tuple[collections.Counter, list[str]]:
    """The status counts of the table parts that pass their checks, and a note per contradiction."""
    notes = list(tensor_problems(store.location, store.store_manifest))
    statuses: collections.Counter = collections.Counter()
    for shard in store.shards:
        table, problem = read_table_part(store.location, shard)
        if problem is not None:
            notes.append(f"shard {shard.index} (examples {shard.start}-{shard.stop - 1}): {problem}; "
                         f"its statuses are not counted")
        else:
            statuses.update(table.column("status").to_pylist())
    counted = sum(statuses.values())
    if counted != store.num_examples:
        notes.append(f"the statuses cover {counted:,} of the manifest's {store.num_examples:,} examples; "
                     f"run `npeff verify`")
    return statuses, notes


def format_info(info: dict) -> str:
    """Human-readable rendering of :func:`store_info`: one aligned ``label  value`` line per fact."""
    from dask.utils import format_bytes  # here: importing npeff.store loads no dask
    projection = info["projection"]
    if projection["kind"] == "ssp-v1":
        projection_text = (f"ssp-v1 (seed {projection['seed']}, d {projection['d']}, "
                           f"region size {projection['region_size']})")
    else:
        projection_text = projection["kind"]
    layout = info["parameter_layout"]
    layout_text = ("not recorded" if layout is None
                   else f"{layout['num_parameters']} tensors, n = {layout['n_total']:,}")
    model = info["model"]
    provenance = info["provenance"]
    lines = [
        ("store", f"{info['path']} ({info['status']})"),
        ("kind", info["kind"]),
        ("shape", f"m = {info['num_examples']:,} examples, r = {info['rank']}, d = {info['dim']}, "
                  f"{info['dtype']}"),
        ("shards", f"{info['num_shards']} of up to {info['shard_examples']} examples "
                   f"(checked chunks of {info['chunk_examples']})"),
        ("on disk", "remote" if info["size_on_disk"] is None else format_bytes(info["size_on_disk"])),
        ("projection", projection_text),
        ("parameters", layout_text),
        ("model", "not recorded" if model is None
         else f"{model['name']}" + (f" @ {model['revision']}" if model.get("revision") else "")),
        ("pef spec", "not recorded" if info["pef_spec"] is None else canonical_json(info["pef_spec"])),
        ("examples", ", ".join(f"{k}: {v:,}" for k, v in sorted(info["example_status"].items())) or "none"),
        ("fingerprint", info["fingerprint"]),
        ("created", f"{provenance.get('created')} by npeff {provenance.get('packages', {}).get('npeff', '?')}"),
        ("finalized", str(provenance.get("finalized"))),
        ("command", str(provenance.get("command"))),
    ]
    if "merged_from" in provenance:
        lines.append(("merged from", ", ".join(p["path"] for p in provenance["merged_from"])))
    lines.extend(("note", note) for note in info.get("notes", ()))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)
