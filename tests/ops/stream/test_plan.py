"""plan_residency: which pieces stay on the device, in host memory, or stream, and the bytes."""

import pytest
import torch

from npeff.errors import InvalidArgumentError
from npeff.ops.stream import parse_bytes, plan_residency
from tests.ops.stream.helpers import make_store

PER_EXAMPLE = 2 * 8 * 8  # r * d * float64


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "s", m=11, shard=3)[0]  # shards of 3, 3, 3, 2 examples


def tiers(plan):
    return [(piece.start, piece.stop, piece.tier) for piece in plan.pieces]


def test_everything_resident_without_a_budget(store):
    plan = plan_residency(store, dtype=torch.float64)
    assert tiers(plan) == [(0, 3, "device"), (3, 6, "device"), (6, 9, "device"), (9, 11, "device")]
    assert plan.resident_bytes == plan.device_bytes == 11 * PER_EXAMPLE
    assert plan.in_flight_bytes == 0


def test_shards_beyond_the_budget_stream_in_pieces(store):
    in_flight = 3 * 1 * PER_EXAMPLE  # three pieces of one example in flight
    budget = 100 + 2 * 3 * PER_EXAMPLE + in_flight + PER_EXAMPLE  # reserved + two shards + in flight, and a bit
    plan = plan_residency(store, dtype=torch.float64, memory_budget=budget, reserved_bytes=100,
                          piece_bytes=PER_EXAMPLE)
    assert tiers(plan) == [(0, 3, "device"), (3, 6, "device"), (6, 7, "stream"), (7, 8, "stream"),
                           (8, 9, "stream"), (9, 10, "stream"), (10, 11, "stream")]
    assert plan.resident_bytes == 6 * PER_EXAMPLE and plan.in_flight_bytes == in_flight
    assert plan.piece_examples == 1


def test_resident_shards_beyond_the_device_budget_stay_in_host_memory(store):
    plan = plan_residency(store, dtype=torch.float64, device_memory_budget=3 * PER_EXAMPLE)
    assert [tier for _, _, tier in tiers(plan)] == ["device", "host", "host", "host"]
    assert plan.device_bytes == 3 * PER_EXAMPLE and plan.resident_bytes == 11 * PER_EXAMPLE
    assert "3 examples on the device" in plan.summary() and "8 in host memory" in plan.summary()


def test_pieces_are_whole_inner_chunks(tmp_path):
    from npeff.store import create_store

    writer = create_store(tmp_path / "c", rank=2, dim=8, projection={"kind": "external"}, shard_examples=8,
                          chunk_examples=4)
    writer.append(torch.zeros(8, 2, 8).numpy())
    plan = plan_residency(writer.finalize(), dtype=torch.float64, memory_budget=1, piece_bytes=5 * PER_EXAMPLE)
    assert [(p.start, p.stop) for p in plan.pieces] == [(0, 4), (4, 8)]  # 5 examples round down to a chunk


@pytest.mark.parametrize("text, expected", [("2GB", 2 * 10**9), ("512MiB", 512 * 2**20), ("1e9", 10**9),
                                            (" 4 kB ", 4000), ("0", 0), (123, 123), (None, None)])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "  ", "lots", "-1GB", -5, "2 parsecs", 1.5, True])
def test_bad_budgets(text):
    with pytest.raises(InvalidArgumentError, match="memory budget"):
        parse_bytes(text)
