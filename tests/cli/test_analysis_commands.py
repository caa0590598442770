"""``npeff top-examples``, ``tunings``, ``compare`` and ``report`` from the command line."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from npeff.cli.main import cli
from tests.ops.analysis.helpers import hand_made_decomposition, known_tunings_case, small_store


@pytest.fixture
def paths(tmp_path):
    W, labels, predictions = known_tunings_case()
    store = small_store(tmp_path / "store", labels=labels, predictions=predictions)
    hand_made_decomposition(tmp_path / "a", store, W)
    hand_made_decomposition(tmp_path / "b", store, W[:, ::-1])
    W_fine = W.copy()
    W_fine[55:, 4] = 0  # component 4 (examples 50..59, no other component's) split in two
    split = W.copy()[:, 4:5]
    split[:55] = 0
    hand_made_decomposition(tmp_path / "fine", store, np.hstack([W_fine, split]))
    small_store(tmp_path / "other", labels=labels[:10], predictions=predictions[:10])
    return tmp_path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_top_examples(paths):
    result = run("top-examples", paths / "a", "-k", 2, "--component", 1)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "component 1: 16 examples with non-zero coefficient"
    assert "#16" in lines[1] and "label neg" in lines[1] and "example number 16" in lines[1]
    assert "#17" in lines[2] and len(lines) == 3
    data = json.loads(run("top-examples", paths / "a", "--store", paths / "store", "-k", 3, "--json").output)
    assert [c["component"] for c in data] == [0, 1, 2, 3, 4]
    assert [e["example_index"] for e in data[0]["examples"]] == [0, 1, 2]


def test_tunings(paths):
    result = run("tunings", paths / "a")
    assert result.exit_code == 0, result.output
    assert "4 of 5 components analysed (1 excluded" in result.output
    assert "LnP-tuned         25.0%" in result.output
    assert "component    1: label neg, LnP" in result.output
    data = json.loads(run("tunings", paths / "a", "--json").output)
    assert data["summary"]["prediction_tuned_pct"] == 50.0
    assert [c["lnp"] for c in data["components"]] == [False, True, False, False, False]


def test_compare(paths):
    result = run("compare", paths / "a", paths / "b")
    assert result.exit_code == 0, result.output
    assert "similarity score 1.0000" in result.output
    data = json.loads(run("compare", paths / "a", paths / "fine", "--json").output)
    assert data["split_map"]["coarse"] == "a"
    assert data["split_map"]["splits"]["4"] == [4, 5]
    assert data["split_map"]["splits"]["3"] == [3]
    assert 0.5 < data["similarity"] < 1.0
    assert "A4 -> B4, B5" in run("compare", paths / "a", paths / "fine").output


def test_report(paths):
    result = run("report", paths / "a", "--out", paths / "report.html")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (paths / "report.html").stat().st_size > 10_000


@pytest.mark.parametrize("args, message", [
    (["top-examples", "{a}", "-k", "65"], "k=65 is larger than the number of examples (64)"),
    (["top-examples", "{a}", "--component", "7"], "component 7 is out of range"),
    (["tunings", "{a}", "--store", "{other}"], "has 10 examples but the decomposition"),
    (["tunings", "{missing}"], "no decomposition at"),
    (["tunings", "{store}"], "is not an npeff decomposition"),
    (["report", "{a}", "--out", "{a}/r.txt"], "must end in .html"),
    (["compare", "{a}", "{a}", "--store", "{other}"], "has 10 examples"),
])
def test_bad_input_is_one_line(paths, args, message):
    names = {"a": paths / "a", "other": paths / "other", "missing": paths / "missing", "store": paths / "store"}
    result = run(*[a.format(**names) for a in args])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    assert message in result.output
