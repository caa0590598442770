"""The per-example table of a PEF store: a declared Arrow schema, never inferred."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from npeff.errors import InvalidArgumentError

STATUS_OK = "ok"
STATUS_NON_FINITE = "non-finite"
STATUS_SKIPPED = "skipped"
STATUSES = (STATUS_OK, STATUS_NON_FINITE, STATUS_SKIPPED)

EXAMPLE_SCHEMA = pa.schema(
    [
        pa.field("example_index", pa.int64(), nullable=False),
        pa.field("source_id", pa.string()),
        pa.field("text", pa.string()),
        pa.field("label", pa.int64()),
        pa.field("prediction", pa.int64()),
        pa.field("probs", pa.list_(pa.float32())),
        pa.field("pef_norm", pa.float64()),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
    ],
    metadata={"npeff.table": "examples", "npeff.table_version": "1"},
)

#: fields a caller may give per example (the writer sets example_index; rank/status are derived
#: from the data unless given). "norm" is accepted as an alias of "pef_norm".
USER_FIELDS = ("source_id", "text", "label", "prediction", "probs", "pef_norm", "rank", "status")


def example_rows(examples: Any, count: int) -> list[dict]:
    """Normalise ``examples`` (None, a pyarrow Table or a list of dicts) to ``count`` dicts."""
    if examples is None:
        return [{} for _ in range(count)]
    if isinstance(examples, pa.Table):
        examples = examples.to_pylist()
    if not isinstance(examples, (list, tuple)):
        raise InvalidArgumentError(
            f"examples must be None, a pyarrow Table or a list of dicts, got {type(examples).__name__}"
        )
    if len(examples) != count:
        raise InvalidArgumentError(
            f"got {len(examples)} example records for {count} PEFs; give one record per PEF"
        )
    rows = []
    for i, record in enumerate(examples):
        if not isinstance(record, dict):
            raise InvalidArgumentError(f"example record {i} must be a dict, got {type(record).__name__}")
        record = dict(record)
        if "norm" in record:
            record.setdefault("pef_norm", record.pop("norm"))
        record.pop("example_index", None)
        unknown = set(record) - set(USER_FIELDS)
        if unknown:
            raise InvalidArgumentError(
                f"example record {i} has unknown fields {sorted(unknown)}; known: {', '.join(USER_FIELDS)}"
            )
        rows.append(record)
    return rows


def finish_row(record: dict, *, index: int, rank: int, max_rank: int, finite: bool) -> dict:
    """Fill the derived columns of one row and check the caller's values."""
    status = record.get("status", STATUS_OK)
    if status not in STATUSES:
        raise InvalidArgumentError(f"example status must be one of {STATUSES}, got {status!r}")
    if not finite:
        status = STATUS_NON_FINITE
    given_rank = record.get("rank", rank)
    if not isinstance(given_rank, int) or not 0 <= given_rank <= max_rank:
        raise InvalidArgumentError(f"example rank must be an integer in [0, {max_rank}], got {given_rank!r}")
    norm = record.get("pef_norm")
    if norm is not None and not isinstance(norm, (int, float)):
        raise InvalidArgumentError(f"pef_norm must be a number, got {norm!r}")
    if norm is not None and not math.isfinite(norm):
        status = STATUS_NON_FINITE
    source_id = record.get("source_id")
    return {
        "example_index": index,
        "source_id": None if source_id is None else str(source_id),
        "text": record.get("text"),
        "label": record.get("label"),
        "prediction": record.get("prediction"),
        "probs": record.get("probs"),
        "pef_norm": norm,
        "rank": given_rank,
        "status": status,
    }


def rows_to_table(rows: list[dict]) -> pa.Table:
    try:
        return pa.Table.from_pylist(rows, schema=EXAMPLE_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InvalidArgumentError(f"example records do not fit the table schema: {error}") from None
