"""Perturbation result directories: resume by component, refusal of other runs, the table's schema."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from npeff.errors import StoreExistsError, StoreNotFoundError
from npeff.store import perturbation as results

MANIFEST = {"decomposition": "d", "store": "s", "model": "m", "components": [0, 2], "settings": {"top": 16}}


def test_resume_keeps_the_records_of_the_same_run(tmp_path):
    assert results.prepare_perturbation_dir(tmp_path / "p", MANIFEST, overwrite=False) == {}
    results.write_record(tmp_path / "p", {"component": 2, "kl_ratio": 3.0})
    again = results.prepare_perturbation_dir(tmp_path / "p", MANIFEST, overwrite=False)
    assert again == {2: {"component": 2, "kl_ratio": 3.0}}
    with pytest.raises(StoreExistsError, match="already exists"):
        results.prepare_perturbation_dir(tmp_path / "p", dict(MANIFEST, components=[1]), overwrite=False)
    assert results.prepare_perturbation_dir(tmp_path / "p", dict(MANIFEST, components=[1]), overwrite=True) == {}


def test_other_directories_are_never_replaced(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text('{"format": "npeff-decomposition"}')
    with pytest.raises(StoreExistsError, match="not an npeff perturbation directory"):
        results.prepare_perturbation_dir(tmp_path / "x", MANIFEST, overwrite=True)


def test_results_table_and_summary(tmp_path):
    results.prepare_perturbation_dir(tmp_path / "p", MANIFEST, overwrite=False)
    records = {0: {"component": 0, "kl_ratio": 4.0, "norm_ratio": 1.0, "u_nonzero": 7},
               2: {"component": 2, "kl_ratio": 9.0, "norm_ratio": None}}
    for record in records.values():
        results.write_record(tmp_path / "p", record)
    summary = {"kl_ratio_geomean": results.geometric_mean(r["kl_ratio"] for r in records.values())}
    results.write_results(tmp_path / "p", records, summary)
    table = pq.read_table(tmp_path / "p" / "components.parquet")
    assert table.schema.equals(results.COMPONENT_SCHEMA, check_metadata=False)
    assert table.column("component").to_pylist() == [0, 2] and table.column("norm_ratio").to_pylist() == [1.0, None]
    opened = results.open_perturbation(tmp_path / "p")
    assert opened.summary["kl_ratio_geomean"] == pytest.approx(6.0) and set(opened.records) == {0, 2}


@pytest.mark.parametrize("values, expected", [([4.0, 9.0], 6.0), ([2.0, None, float("nan"), 0.0, 8.0], 4.0),
                                              ([None], None)], ids=["plain", "skips-missing", "none"])
def test_geometric_mean(values, expected):
    assert results.geometric_mean(values) == (pytest.approx(expected) if expected else None)


def test_directions_round_trip_sparsely(tmp_path):
    u = np.zeros(1000, dtype=np.float32)
    u[[3, 500, 999]] = [1.5, -2.0, 0.25]
    results.save_direction(tmp_path, 4, u)
    np.testing.assert_array_equal(results.load_direction(tmp_path, 4), u)
    with pytest.raises(StoreNotFoundError, match="--save-directions"):
        results.load_direction(tmp_path, 5)
