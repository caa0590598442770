"""The declared schema of the example table."""

import pyarrow as pa

from npeff.store import EXAMPLE_SCHEMA


def test_declared_schema_types():
    assert EXAMPLE_SCHEMA.field("example_index").type == pa.int64()
    assert not EXAMPLE_SCHEMA.field("example_index").nullable
    assert EXAMPLE_SCHEMA.field("label").nullable
    assert EXAMPLE_SCHEMA.field("probs").type == pa.list_(pa.float32())
    assert EXAMPLE_SCHEMA.field("pef_norm").type == pa.float64()
    assert EXAMPLE_SCHEMA.names == ["example_index", "source_id", "text", "label", "prediction",
                                    "probs", "pef_norm", "rank", "status"]
