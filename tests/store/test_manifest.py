"""Manifest dataclasses: validation and JSON round trips."""

import json

import pytest

from npeff.cuda_ops import ProjectionSpec
from npeff.errors import InvalidArgumentError, StoreCorruptError
from npeff.store import ModelIdentity, ParameterLayout, StoreConfig, StoreManifest
from npeff.store.manifest import ShardRecord


def config(**changes):
    values = dict(kind="lrm-pef", rank=4, dim=64, dtype="float16",
                  projection={"kind": "ssp-v1", "seed": 2**63 + 1}, shard_examples=8, chunk_examples=2,
                  parameter_layout=ParameterLayout.from_shapes([("a", (2, 3)), ("b", (5,))]),
                  model=ModelIdentity(name="tiny-gpt2", revision="abc", config_hash="f00"),
                  pef_spec={"formulation": "label-tokens", "eps": None})
    values.update(changes)
    return StoreConfig(**values)


def test_projection_spec_round_trip():
    spec = ProjectionSpec(seed=7, d=8192)
    assert ProjectionSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.region_size == 256 and spec.scale == pytest.approx(32 ** -0.5)
    with pytest.raises(InvalidArgumentError, match="region_size"):
        ProjectionSpec.from_dict({**spec.to_dict(), "region_size": 128})
    with pytest.raises(InvalidArgumentError, match="unknown projection spec fields"):
        ProjectionSpec.from_dict({**spec.to_dict(), "density": 3})


def test_manifest_round_trip_through_json():
    shards = (ShardRecord(index=0, start=0, stop=8, data_checksum="a", table_checksum="b"),
              ShardRecord(index=1, start=8, stop=11, data_checksum="c", table_checksum="d"))
    manifest = StoreManifest(config=config(), status="finalized", num_examples=11, shards=shards,
                             provenance={"command": "x"})
    again = StoreManifest.from_dict(json.loads(json.dumps(manifest.to_dict())))
    assert again == manifest and again.fingerprint == manifest.fingerprint


def test_manifest_rejects_inconsistent_content():
    shards = (ShardRecord(index=0, start=0, stop=5, data_checksum="a", table_checksum="b"),
              ShardRecord(index=1, start=5, stop=11, data_checksum="c", table_checksum="d"))
    with pytest.raises(StoreCorruptError, match="every shard but the last holds 8"):
        StoreManifest(config=config(), status="finalized", num_examples=11, shards=shards)
    good = StoreManifest(config=config()).to_dict()
    with pytest.raises(StoreCorruptError, match="fingerprint"):
        StoreManifest.from_dict({**good, "fingerprint": "0" * 24})
    with pytest.raises(InvalidArgumentError, match="format version 2 is not supported"):
        StoreManifest.from_dict({**good, "format_version": 2})


def test_layout_validation():
    layout = ParameterLayout.from_shapes([("w", (3, 4)), ("b", (4,))])
    assert layout.offsets == (0, 12) and layout.n_total == 16
    assert ParameterLayout.from_dict(layout.to_dict()) == layout
    with pytest.raises(InvalidArgumentError, match="contiguous"):
        ParameterLayout(names=("w", "b"), shapes=((3, 4), (4,)), offsets=(0, 10), n_total=14)
    with pytest.raises(InvalidArgumentError, match="add up to 16"):
        ParameterLayout(names=("w", "b"), shapes=((3, 4), (4,)), offsets=(0, 12), n_total=17)
    with pytest.raises(InvalidArgumentError, match="duplicate"):
        ParameterLayout.from_shapes([("w", (1,)), ("w", (1,))])
    with pytest.raises(InvalidArgumentError, match="dim = n_total"):
        config(projection={"kind": "none"})


def test_differences_name_each_field():
    lines = config().differences(config(rank=2, dtype="float32"))
    assert len(lines) == 2 and lines[0].strip().startswith("rank: existing 4")


def test_fingerprint_is_projection_and_layout():
    other_layout = ParameterLayout.from_shapes([("a", (6,)), ("b", (5,))])
    assert config().fingerprint() == config(pef_spec={"x": 1}, rank=2, dtype="float32", model=None).fingerprint()
    assert config().fingerprint() != config(projection={"kind": "ssp-v1", "seed": 6}).fingerprint()
    assert config().fingerprint() != config(parameter_layout=other_layout).fingerprint()
