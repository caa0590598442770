"""A decomposition with its store: stores that do not belong are refused, names and columns read."""

import shutil

import pytest

from npeff.errors import IncompatibleStoresError, InvalidArgumentError, StoreNotFoundError
from npeff.ops.analysis.source_store import example_columns, label_name, label_names, open_store_for
from tests.ops.analysis.helpers import hand_made_decomposition, known_tunings_case, small_store


@pytest.fixture
def case(tmp_path):
    W, labels, predictions = known_tunings_case()
    store = small_store(tmp_path / "store", labels=labels, predictions=predictions)
    return hand_made_decomposition(tmp_path / "d", store, W), store, labels, predictions


def test_the_recorded_store_is_opened_and_read(case):
    decomposition, store, labels, predictions = case
    opened = open_store_for(decomposition)
    assert opened.path == store.path
    columns = example_columns(opened)
    assert columns["label"] == labels and columns["prediction"] == predictions
    assert columns["text"][5] == "example number 5" and columns["example_index"] == list(range(64))
    assert label_names(store) == ["neg", "pos"]


@pytest.mark.parametrize("value, names, expected", [
    (1, ["neg", " pos "], "pos"), (None, ["neg", "pos"], "-"), (2, ["neg", "pos"], "2"), (1, None, "1"),
    ("yes", ["neg", "pos"], "yes"),
])
def test_label_name(value, names, expected):
    assert label_name(value, names) == expected


@pytest.mark.parametrize("make_store, message", [
    (lambda path, labels, predictions: small_store(path, labels=labels, predictions=[1 - p for p in predictions]),
     "does not hold the examples"),
    (lambda path, labels, predictions: small_store(path, labels=labels[:40], predictions=predictions[:40]),
     "40 examples"),
    (lambda path, labels, predictions: small_store(path, labels=labels, predictions=predictions,
                                                   projection={"kind": "none"}),
     "projection and parameter layout"),
], ids=["other-examples", "fewer-examples", "other-projection"])
def test_a_store_that_does_not_belong_is_refused(case, tmp_path, make_store, message):
    decomposition, _, labels, predictions = case
    other = make_store(tmp_path / "other", labels, predictions)
    with pytest.raises(IncompatibleStoresError, match=message):
        open_store_for(decomposition, other)
    with pytest.raises(IncompatibleStoresError, match=message):
        open_store_for(decomposition, tmp_path / "other")  # a path is opened first


def test_a_missing_recorded_store_asks_for_one(case, tmp_path):
    decomposition, *_ = case
    shutil.rmtree(tmp_path / "store")
    with pytest.raises(StoreNotFoundError, match="pass --store"):
        open_store_for(decomposition)


def test_a_decomposition_without_a_recorded_store_asks_for_one(case, tmp_path):
    import dataclasses

    from npeff.store import open_decomposition
    from npeff.store.decomposition import write_decomposition

    decomposition, *_ = case
    manifest = dataclasses.replace(decomposition.meta, store=None)
    (tmp_path / "bare").mkdir()
    write_decomposition(tmp_path / "bare", W=decomposition.W, H=decomposition.H, losses=decomposition.losses,
                        manifest=manifest)
    with pytest.raises(InvalidArgumentError, match="records no store; pass --store"):
        open_store_for(open_decomposition(tmp_path / "bare"))
