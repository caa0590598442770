"""The whole demo at a reduced size, and the output folders it refuses."""

import json

import pytest
from click.testing import CliRunner

from npeff.cli.main import cli
from npeff.errors import StoreExistsError
from npeff.ops.demo.pipeline import MARKER, DemoSettings, run_demo

#: the reduced size run by the tests (about ten seconds) and its stated alignment threshold
SMALL = DemoSettings.quick()
ALIGNED_AT_LEAST = 0.5


@pytest.mark.slow
def test_demo_pipeline_aligns_components_with_planted_strategies(tmp_path):
    summary = run_demo(tmp_path / "demo", SMALL)
    aligned = summary["alignment"]
    assert summary["analysis_accuracy"] > 0.9
    assert aligned["n_analysed"] >= 8
    assert aligned["aligned_fraction"] >= ALIGNED_AT_LEAST
    assert aligned["aligned_fraction"] > 10 * aligned["chance_aligned_fraction"]
    assert len(aligned["strategies_found"]) >= 3
    assert summary["decomposition_losses"][1] < 0.5 * summary["decomposition_losses"][0]
    for name in ("report.html", "summary.json", "data.jsonl", "train.jsonl", "task.yaml", "store/manifest.json",
                 "decomposition/W.npy", "model/config.json"):
        assert (tmp_path / "demo" / name).exists(), name
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["alignment"] == aligned
    assert json.loads((tmp_path / "demo" / MARKER).read_text())["settings"]["n_components"] == SMALL.n_components
    page = (tmp_path / "demo" / "report.html").read_text()
    assert page.count('class="card"') == SMALL.n_components
    # the baselines ran on the same examples, side by side in the summary and the report
    comparison = summary["comparison"]
    assert [row["name"] for row in comparison] == ["NPEFF", "G-NPEFF", "gradient clustering", "SAE", "SED"]
    assert [row["method"] for row in comparison] == ["npeff", "npeff", "gradient-clustering", "sae", "sed"]
    assert comparison[0]["alignment"]["aligned_fraction"] == aligned["aligned_fraction"]
    for row in comparison:
        assert row["tunings"]["n_components"] == SMALL.n_components and row["classifier"]["threshold"] == 0.75
    table = page[page.index('id="method-table"'):page.index("</table>", page.index('id="method-table"'))]
    assert [m for m in ("decomposition", "gnpeff", "clusters", "sae", "sed") if f"<tr><td>{m}</td>" in table] == \
        ["decomposition", "gnpeff", "clusters", "sae", "sed"]
    assert summary["perturbation"]["n_components"] == SMALL.n_components

    # the files it leaves work with the commands
    result = CliRunner().invoke(cli, ["top-examples", str(tmp_path / "demo" / "decomposition"), "-k", "3",
                                      "--component", "0"])
    assert result.exit_code == 0 and "label " in result.output
    with pytest.raises(StoreExistsError, match="--overwrite"):
        run_demo(tmp_path / "demo", SMALL)


def _a_file(path):
    path.write_text("keep me")
    return path


def _a_folder_of_someone_else(path):
    path.mkdir()
    (path / "thesis.tex").write_text("keep me")
    return path / "thesis.tex"


def _an_earlier_demo(path):
    path.mkdir()
    (path / MARKER).write_text("{}")
    (path / "summary.json").write_text("keep me")
    return path / "summary.json"


@pytest.mark.parametrize("make, message", [
    (_a_file, "exists and is a file"),
    (_a_folder_of_someone_else, "not an npeff demo folder"),
    (_an_earlier_demo, "pass --overwrite to replace it"),
], ids=["file", "foreign-folder", "earlier-demo"])
def test_demo_refuses_an_output_folder(tmp_path, make, message):
    kept = make(tmp_path / "out")
    with pytest.raises(StoreExistsError, match=message):
        run_demo(tmp_path / "out", SMALL)
    assert kept.read_text() == "keep me"


def test_demo_command_refuses_a_folder_it_did_not_make_even_with_overwrite(tmp_path):
    kept = _a_folder_of_someone_else(tmp_path / "mine")
    result = CliRunner().invoke(cli, ["demo", "--quick", "--out", str(tmp_path / "mine"), "--overwrite"])
    assert result.exit_code == 1 and "not an npeff demo folder" in result.output
    assert kept.read_text() == "keep me"
