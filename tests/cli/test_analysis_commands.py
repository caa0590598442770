"""``npeff top-examples``, ``tunings``, ``compare``, ``report`` and ``spectrum`` from the command line."""

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
    order = list(range(len(labels)))[::-1]  # the same examples in another order (another store)
    reordered = small_store(tmp_path / "reordered", labels=[labels[i] for i in order],
                            predictions=[predictions[i] for i in order], ids=[f"id-{i}" for i in order])
    hand_made_decomposition(tmp_path / "c", reordered, W[order])
    renamed = small_store(tmp_path / "renamed", labels=labels, predictions=predictions[::-1],
                          ids=[f"id-{i}" for i in range(len(labels) - 3)] + ["x", "y", "z"])
    hand_made_decomposition(tmp_path / "d", renamed, W)
    small_store(tmp_path / "held-out", labels=labels, predictions=predictions,
                texts=[f"held-out sentence {i}" for i in range(len(labels))])
    return tmp_path


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_top_examples(paths):
    result = run("top-examples", paths / "a", "-k", 2, "--component", 1)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == ("component 1: 16 examples with non-zero coefficient, 16 in the effective support "
                        "(> 1e-06 x the largest)")
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


def test_analysis_of_coefficients_fitted_to_held_out_data(paths):
    fitted = run("fit", paths / "a", paths / "held-out", "--out", paths / "coef", "--steps", 3)
    assert fitted.exit_code == 0, fitted.output
    top = run("top-examples", paths / "coef", "-k", 2, "--component", 0)
    assert top.exit_code == 0, top.output
    assert "held-out sentence" in top.output and "example number" not in top.output  # the fit's store
    data = json.loads(run("tunings", paths / "coef", "--json").output)
    W = np.load(paths / "coef" / "W.npy")
    from npeff.ops.analysis import compute_tunings
    from npeff.store import open_store

    table = open_store(paths / "held-out").examples
    expected = compute_tunings(W, table.column("label").to_pylist(), table.column("prediction").to_pylist())
    assert data["summary"] == expected.summary() and data["summary"]["support_threshold"] == 1e-6
    report = run("report", paths / "coef", "--out", paths / "coef.html")
    assert report.exit_code == 0, report.output
    page = (paths / "coef.html").read_text()
    assert "Fitted coefficients" in page and "held-out sentence" in page
    assert "PEF eigenvalue decay" not in page  # no --store: no pass over the store
    side_by_side = run("tunings", paths / "a", paths / "coef")
    assert side_by_side.exit_code == 0 and "coef (npeff, fitted)" in side_by_side.output


def test_support_threshold_default_is_the_libraries():
    from npeff.cli.analysis import SUPPORT_THRESHOLD
    from npeff.ops.analysis import DEFAULT_SUPPORT_THRESHOLD

    assert SUPPORT_THRESHOLD == DEFAULT_SUPPORT_THRESHOLD


def test_support_threshold_option(paths):
    W, labels, predictions = known_tunings_case()
    W[56:64, 1] = 1e-12
    from npeff.store import open_store

    hand_made_decomposition(paths / "tiny", open_store(paths / "store"), W)
    default = json.loads(run("tunings", paths / "tiny", "--json").output)
    raw = json.loads(run("tunings", paths / "tiny", "--json", "--support-threshold", 0).output)
    assert (default["components"][1]["n_nonzero"], default["components"][1]["n_effective"]) == (24, 16)
    assert raw["components"][1]["n_effective"] == 24
    assert (default["summary"]["support_threshold"], raw["summary"]["support_threshold"]) == (1e-6, 0.0)
    assert default["classifier"]["support_threshold"] == 1e-6
    text = run("tunings", paths / "tiny", "--support-threshold", "1e-3").output
    assert "fewer than 16 examples in the effective support, coefficients > 0.001 x" in text
    top = json.loads(run("top-examples", paths / "tiny", "--component", 1, "-k", 30, "--json").output)[0]
    assert (top["n_effective"], len(top["examples"])) == (16, 16)
    compared = json.loads(run("compare", paths / "tiny", paths / "a", "--json", "--support-threshold", 0).output)
    assert compared["support_threshold"] == 0.0


def test_compare_across_stores_by_id(paths):
    result = run("compare", paths / "a", paths / "c")
    assert result.exit_code == 0, result.output
    assert "similarity score 1.0000" in result.output
    assert f"64 examples matched by id between {paths / 'store'} and {paths / 'reordered'}" in result.output
    data = json.loads(run("compare", paths / "a", paths / "c", "--json").output)
    assert data["examples_matched_by"] == "example id" and data["split_map"]["tunings_preserved"] == 1.0
    same = json.loads(run("compare", paths / "a", paths / "b", "--json").output)
    assert same["examples_matched_by"] == "index"
    given = run("compare", paths / "a", paths / "c", "--store", paths / "store", "--store-b", paths / "reordered")
    assert given.exit_code == 0 and "similarity score 1.0000" in given.output


def test_spectrum(paths):
    from npeff.store import open_store

    store = open_store(paths / "store")
    g = store.read(0, store.num_examples).astype(np.float64)
    naive = np.mean([np.sort(np.linalg.eigvalsh(x @ x.T))[::-1] / np.linalg.eigvalsh(x @ x.T).max() for x in g],
                    axis=0)
    data = json.loads(run("spectrum", paths / "store", "--json").stdout)  # progress goes to stderr
    assert data["normalize"] == "max" and data["n_used"] == 64 and data["rank"] == 1
    np.testing.assert_allclose(data["mean"], naive, rtol=1e-12)
    text = run("spectrum", paths / "store", "--normalize", "sum")
    assert text.exit_code == 0, text.output
    assert "eigenvalues of G G^T for 64 of 64 examples (rank 1), each divided by their sum" in text.output
    assert text.stdout.splitlines()[-1].split() == ["1", "1", "0", "1.0000"]
    report = run("report", paths / "a", "--out", paths / "with.html", "--store", paths / "store")
    assert report.exit_code == 0, report.output
    assert "PEF eigenvalue decay" in (paths / "with.html").read_text()
    run("report", paths / "a", "--out", paths / "without.html", "--store", paths / "store", "--no-spectrum")
    assert "PEF eigenvalue decay" not in (paths / "without.html").read_text()
    run("report", paths / "a", "--out", paths / "forced.html", "--spectrum")
    assert "PEF eigenvalue decay" in (paths / "forced.html").read_text()


@pytest.mark.parametrize("args, message", [
    (["top-examples", "{a}", "-k", "65"], "k=65 is larger than the number of examples (64)"),
    (["top-examples", "{a}", "--component", "7"], "component 7 is out of range"),
    (["tunings", "{a}", "--store", "{other}"], "has 10 examples but the decomposition"),
    (["tunings", "{missing}"], "no decomposition at"),
    (["tunings", "{store}"], "is not an npeff decomposition"),
    (["report", "{a}", "--out", "{a}/r.txt"], "must end in .html"),
    (["compare", "{a}", "{a}", "--store", "{other}"], "has 10 examples"),
    (["compare", "{a}", "{d}"], "the stores hold different examples: 3 of the 64 example ids"),
    (["compare", "{a}", "{c}", "--store-b", "{store}"], "does not hold the examples the decomposition"),
    (["tunings", "{a}", "--support-threshold", "1"], "support threshold"),
    (["top-examples", "{a}", "--support-threshold", "-0.5"], "support threshold"),
    (["report", "{a}", "--out", "{a}/../r.html", "--support-threshold", "nan"], "support threshold"),
    (["compare", "{a}", "{b}", "--support-threshold", "2"], "support threshold"),
    (["tunings", "{coef}"], "that {coef} were fitted with cannot be opened"),
    (["top-examples", "{bad_coef}"], "holds coefficients for 2 components but the decomposition"),
    (["tunings", "{good_coef}", "--store", "{store}"], "does not hold the examples the coefficients"),
    (["spectrum", "{missing}"], "missing"),
    (["spectrum", "{a}"], "not an npeff PEF store"),
    (["spectrum", "{store}", "--device", "tpu"], "device"),
])
def test_bad_input_is_one_line(paths, args, message):
    from npeff.store import open_store
    from npeff.store.coefficients import CoefficientsManifest, write_coefficients

    held = open_store(paths / "held-out")
    for name, decomposition, columns in (("coef", paths / "gone", 5), ("bad_coef", paths / "a", 2),
                                         ("good_coef", paths / "a", 5)):
        write_coefficients(paths / name, np.ones((64, columns), np.float32), CoefficientsManifest(
            decomposition=str(decomposition), store=str(held.path), store_fingerprint=held.fingerprint,
            store_content_id=held.content_id, steps=1, num_examples=64, n_components=columns))
    names = {name: paths / name for name in ("a", "b", "c", "d", "other", "missing", "store", "coef", "bad_coef",
                                             "good_coef")}
    message = message.format(**names)
    result = run(*[a.format(**names) for a in args])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    assert message in result.output
