"""``npeff perturb`` through click, and the report showing its results."""

import json

import pytest
from click.testing import CliRunner

from npeff.cli.main import cli


def test_perturb_then_report(classifier_decomposition, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["perturb", str(classifier_decomposition / "decomposition"), "--component", "1", "--component", "0",
                                 "--top", "4", "--baseline", "6", "--relative-magnitude", "0.05", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    assert summary["n_components"] == 2 and summary["components"] == [1, 0]
    assert summary["settings"]["relative_magnitude"] == 0.05 and summary["kl_ratio_geomean"] > 0
    assert (classifier_decomposition / "decomposition" / "perturbation" / "components.parquet").is_file()
    report = runner.invoke(cli, ["report", str(classifier_decomposition / "decomposition"), "--out", str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    page = (tmp_path / "r.html").read_text()
    assert "KL ratio (geometric mean)" in page and f"{summary['kl_ratio_geomean']:.3g}" in page
    assert page.count('class="meta perturbation"') == 2 and "0.05 times the norm of the included parameters" in page


@pytest.mark.parametrize("args, message", [
    (["--component", "9"], "Error: component 9 is out of range"),
    (["--magnitude", "1", "--target-kl", "0.1"], "Error: give one of --magnitude, --relative-magnitude and --target-kl"),
    (["--threshold", "2"], "Error: the rejection threshold"),
    (["--model", "{tmp}/nowhere"], "Error: the model folder"),
], ids=["component", "two-rules", "threshold", "no-model"])
def test_bad_input_is_a_one_line_error(classifier_decomposition, tmp_path, args, message):
    result = CliRunner().invoke(cli, ["perturb", str(classifier_decomposition / "decomposition"), "--out", str(tmp_path / "p"),
                                      "--top", "2", "--baseline", "3", *[a.format(tmp=tmp_path) for a in args]])
    assert result.exit_code == 1
    assert result.output.startswith(message) and result.output.count("\n") == 1, result.output
