"""The manifest of a PEF store: frozen, validated dataclasses that round-trip through JSON.

A store is self-describing: ``manifest.json`` says what the tensor is (kind, shape, dtype), how it
was projected (the projection spec), from which parameters (the layout) of which model, with which
PEF formulation, by which software, and holds a checksum of every shard when finalized.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from npeff.cuda_ops.spec import SPEC_KIND, ProjectionSpec
from npeff.errors import InvalidArgumentError, StoreCorruptError
from npeff.store._checks import plain_int as _plain_int
from npeff.store._checks import require as _require
from npeff.store.parameter_layout import ParameterLayout

FORMAT_NAME = "npeff-pef-store"
FORMAT_VERSION = 1
KINDS = ("lrm-pef", "gradient", "divergence", "activation")
STORAGE_DTYPES = ("float32", "float16")
STATUSES = ("building", "finalized")
#: projection kinds besides ssp-v1: data projected elsewhere, or not projected at all (d = n)
OTHER_PROJECTIONS = ("external", "none")
#: ``pef_spec.normalization`` values saying every PEF has ``||G_i^T G_i||_F = 1`` (or is zero):
#: ``unit-l2`` is the same for a rank-1 store (``||g g^T||_F = ||g||^2``)
NORMALIZED = ("unit-frobenius", "unit-l2")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def normalize_projection(projection: Any, dim: int) -> dict:
    """Turn a :class:`ProjectionSpec` or a dict into the manifest's projection dict.

    ``{"kind": "ssp-v1", "seed": 0}`` takes ``d`` from ``dim``; ``{"kind": "external"}`` marks data
    projected outside npeff; ``{"kind": "none"}`` unprojected rows (``dim`` is then ``n``).
    """
    if isinstance(projection, ProjectionSpec):
        projection = projection.to_dict()
    _require(
        isinstance(projection, dict),
        f"projection must be a ProjectionSpec or a dict such as {{'kind': 'ssp-v1', 'seed': 0}}, "
        f"got {projection!r}",
    )
    kind = projection.get("kind", SPEC_KIND)
    if kind in OTHER_PROJECTIONS:
        extra = set(projection) - {"kind"}
        _require(not extra, f"projection kind {kind!r} takes no other fields, got {sorted(extra)}")
        return {"kind": kind}
    fields = dict(projection)
    fields.setdefault("d", dim)
    spec = ProjectionSpec.from_dict(fields)
    _require(
        spec.d == dim,
        f"projection d={spec.d} differs from the store's dim={dim}; they must be equal",
    )
    return spec.to_dict()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelIdentity:
    """The model the PEFs were computed from: hub name or path, revision, hash of its config, and
    the GGUF file it was loaded from (a quantised checkpoint, dequantised on loading), if any."""

    name: str
    revision: str | None = None
    config_hash: str | None = None
    gguf_file: str | None = None

    def __post_init__(self) -> None:
        _require(isinstance(self.name, str) and self.name != "", "model name must be a non-empty string")

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        if self.gguf_file is None:  # as manifests written before GGUF loading
            del data["gguf_file"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelIdentity":
        _require(isinstance(data, dict), f"model identity must be a mapping, got {data!r}")
        unknown = set(data) - {"name", "revision", "config_hash", "gguf_file"}
        _require(not unknown, f"unknown model identity fields {sorted(unknown)}")
        return cls(**data)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreConfig:
    """Everything fixed when a store is created; a resumed build must ask for exactly this.

    Attributes:
        kind: ``"lrm-pef"`` (rows of low-rank PEFs), ``"gradient"`` (G-NPEFF and gradient
            clustering, rank 1), ``"divergence"`` (divergence gradients for ``npeff sed``, rank 1)
            or ``"activation"`` (residual-stream activations for SAEs, rank 1).
        rank: r, rows per example (examples of lower rank are zero-padded).
        dim: d, the projected dimension.
        dtype: storage dtype, ``"float32"`` or ``"float16"`` (reads are always float32).
        projection: the manifest's projection dict (see :func:`normalize_projection`).
        shard_examples: examples per shard (the unit of writing and of one Dask block).
        chunk_examples: examples per inner chunk of a shard (the unit of a checked partial read).
        parameter_layout: the parameters the rows cover, if known.
        model: the model identity, if known.
        pef_spec: how the PEFs were formed (task, label space, EPS, SVD rank, normalisation).
    """

    kind: str
    rank: int
    dim: int
    dtype: str
    projection: dict
    shard_examples: int
    chunk_examples: int
    parameter_layout: ParameterLayout | None = None
    model: ModelIdentity | None = None
    pef_spec: dict | None = None

    def __post_init__(self) -> None:
        _require(self.kind in KINDS, f"store kind must be one of {KINDS}, got {self.kind!r}")
        _plain_int(self.rank, "rank", 1)
        _plain_int(self.dim, "dim", 1)
        _require(self.dtype in STORAGE_DTYPES,
                 f"storage dtype must be one of {STORAGE_DTYPES}, got {self.dtype!r}")
        _require(self.kind == "lrm-pef" or self.rank == 1,
                 f"a {self.kind} store has rank 1, got rank={self.rank}")
        object.__setattr__(self, "projection", normalize_projection(self.projection, self.dim))
        _plain_int(self.shard_examples, "shard_examples", 1)
        _plain_int(self.chunk_examples, "chunk_examples", 1)
        _require(
            self.shard_examples % self.chunk_examples == 0,
            f"shard_examples={self.shard_examples} must be a multiple of "
            f"chunk_examples={self.chunk_examples}",
        )
        if self.parameter_layout is not None:
            _require(isinstance(self.parameter_layout, ParameterLayout),
                     "parameter_layout must be a ParameterLayout")
            if self.projection["kind"] == "none":
                _require(self.parameter_layout.n_total == self.dim,
                         f"unprojected rows have dim = n_total: dim={self.dim}, "
                         f"n_total={self.parameter_layout.n_total}")
        if self.pef_spec is not None:
            _require(isinstance(self.pef_spec, dict), "pef_spec must be a mapping")
            try:
                canonical_json(self.pef_spec)
            except (TypeError, ValueError) as error:
                raise InvalidArgumentError(f"pef_spec must be JSON-serialisable: {error}") from None

    @property
    def normalized(self) -> bool:
        """Whether ``pef_spec.normalization`` says every PEF has unit ``||G_i^T G_i||_F`` (see
        :data:`NORMALIZED`); a store that does not say counts as not normalised."""
        return (self.pef_spec or {}).get("normalization") in NORMALIZED

    @property
    def bytes_per_example(self) -> int:
        return self.rank * self.dim * (4 if self.dtype == "float32" else 2)

    def fingerprint(self) -> str:
        """Compatibility fingerprint: equal iff projection spec and parameter layout are equal."""
        identity = {
            "projection": self.projection,
            "parameter_layout": None if self.parameter_layout is None else self.parameter_layout.to_dict(),
        }
        return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:24]

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "rank": self.rank,
            "dim": self.dim,
            "dtype": self.dtype,
            "projection": self.projection,
            "shard_examples": self.shard_examples,
            "chunk_examples": self.chunk_examples,
            "parameter_layout": None if self.parameter_layout is None else self.parameter_layout.to_dict(),
            "model": None if self.model is None else self.model.to_dict(),
            "pef_spec": self.pef_spec,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "StoreConfig":
        layout = data.get("parameter_layout")
        model = data.get("model")
        return cls(
            kind=data["kind"], rank=data["rank"], dim=data["dim"], dtype=data["dtype"],
            projection=data["projection"], shard_examples=data["shard_examples"],
            chunk_examples=data["chunk_examples"],
            parameter_layout=None if layout is None else ParameterLayout.from_dict(layout),
            model=None if model is None else ModelIdentity.from_dict(model),
            pef_spec=data.get("pef_spec"),
        )

    def differences(self, other: "StoreConfig") -> list[str]:
        """Human-readable ``field: this vs other`` lines for every field that differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"  {key}: existing {canonical_json(mine[key])}  vs  requested {canonical_json(theirs[key])}"
            for key in mine
            if canonical_json(mine[key]) != canonical_json(theirs[key])
        ]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShardRecord:
    """One committed shard: examples ``[start, stop)``, checksums of its data and table files."""

    index: int
    start: int
    stop: int
    data_checksum: str
    table_checksum: str

    def __post_init__(self) -> None:
        _plain_int(self.index, "shard index")
        _plain_int(self.start, "shard start")
        _require(isinstance(self.stop, int) and self.stop > self.start,
                 f"shard {self.index} is empty or reversed: [{self.start}, {self.stop})")

    @property
    def num_examples(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ShardRecord":
        return cls(**data)


def check_shard_sequence(shards: tuple[ShardRecord, ...], shard_examples: int) -> int:
    """Shards must tile ``[0, m)`` in order, all full but the last; returns ``m``."""
    position = 0
    for i, shard in enumerate(shards):
        if shard.index != i or shard.start != position:
            raise StoreCorruptError(
                f"shard records are out of order at shard {i}: {shard.to_dict()}"
            )
        if shard.num_examples > shard_examples or (
            i < len(shards) - 1 and shard.num_examples != shard_examples
        ):
            raise StoreCorruptError(f"shard {i} holds {shard.num_examples} examples; "
                                    f"every shard but the last holds {shard_examples}")
        position = shard.stop
    return position


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreManifest:
    """The whole ``manifest.json`` of a store.

    ``tensor_metadata_checksum`` is the xxh3-128 of ``pefs/zarr.json`` as the store was finalized
    (None in stores finalized before it was recorded, and while building, when the file still
    changes with every shard).
    """

    config: StoreConfig
    status: str = "building"
    num_examples: int = 0
    shards: tuple[ShardRecord, ...] = ()
    provenance: dict = dataclasses.field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    tensor_metadata_checksum: str | None = None

    def __post_init__(self) -> None:
        _require(self.status in STATUSES, f"store status must be one of {STATUSES}, got {self.status!r}")
        _require(self.tensor_metadata_checksum is None or isinstance(self.tensor_metadata_checksum, str),
                 f"tensor_metadata_checksum must be a string, got {self.tensor_metadata_checksum!r}")
        _require(self.format_version == FORMAT_VERSION,
                 f"store format version {self.format_version} is not supported by this npeff "
                 f"(it reads version {FORMAT_VERSION}); upgrade npeff")
        object.__setattr__(self, "shards", tuple(self.shards))
        if self.status == "finalized":
            total = check_shard_sequence(self.shards, self.config.shard_examples)
            if total != self.num_examples:
                raise StoreCorruptError(
                    f"manifest says {self.num_examples} examples but its shards hold {total}"
                )

    @property
    def fingerprint(self) -> str:
        return self.config.fingerprint()

    def to_dict(self) -> dict:
        config = self.config.to_dict()
        return {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "status": self.status,
            "kind": config.pop("kind"),
            "num_examples": self.num_examples,
            "rank": config.pop("rank"),
            "dim": config.pop("dim"),
            "dtype": config.pop("dtype"),
            "fingerprint": self.fingerprint,
            **config,
            # written only when recorded: a manifest of an earlier npeff round-trips unchanged
            **({} if self.tensor_metadata_checksum is None
               else {"tensor_metadata_checksum": self.tensor_metadata_checksum}),
            "shards": [s.to_dict() for s in self.shards],
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "StoreManifest":
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise StoreCorruptError(
                f"not an npeff PEF store manifest (format={data.get('format') if isinstance(data, dict) else None!r})"
            )
        try:
            config = StoreConfig.from_dict(data)
            manifest = cls(
                config=config,
                status=data["status"],
                num_examples=data["num_examples"],
                shards=tuple(ShardRecord.from_dict(s) for s in data.get("shards", [])),
                provenance=data.get("provenance", {}),
                format_version=data["format_version"],
                tensor_metadata_checksum=data.get("tensor_metadata_checksum"),
            )
        except (KeyError, TypeError) as error:
            raise StoreCorruptError(f"manifest is missing or has a malformed field: {error}") from None
        if data.get("fingerprint") not in (None, manifest.fingerprint):
            raise StoreCorruptError(
                f"manifest fingerprint {data['fingerprint']} does not match its content "
                f"({manifest.fingerprint})"
            )
        return manifest

    def replace(self, **changes) -> "StoreManifest":
        return dataclasses.replace(self, **changes)
