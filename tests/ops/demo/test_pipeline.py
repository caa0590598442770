"""The whole demo at a reduced size, its independence of the machine's thread counts, and the
output folders it refuses."""

import json
from dataclasses import replace

import numba
import pytest
import torch
from click.testing import CliRunner

from npeff.cli.main import cli
from npeff.errors import InvalidArgumentError, StoreExistsError
from npeff.ops.demo.pipeline import MARKER, DemoSettings, fixed_threads, run_demo

#: the reduced size run by the tests (about ten seconds) and its stated alignment threshold
SMALL = DemoSettings.quick()
ALIGNED_AT_LEAST = 0.5
#: every step of the demo at a toy size (a few seconds): enough for thread counts to change its sums
TINY = DemoSettings(train_examples=400, epochs=1, pef_examples=96, dim=256, n_components=4, warmup_steps=10,
                    joint_steps=40, warmup_lr=1e-3, joint_lr=1e-3, perturb_baseline=32, sae_steps=50,
                    sae_batch_size=64, sed_steps=50)
#: what each method writes, compared byte for byte
OUTPUTS = ("model/model.safetensors", "decomposition/W.npy", "decomposition/H.npy", "gnpeff/W.npy", "clusters/W.npy",
           "sae/W.npy", "sed/W.npy", "sed/H.npy")


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


def _figures(summary):
    """The summary without what names the folder or the time taken."""
    kept = {k: v for k, v in summary.items() if k not in ("out", "report", "store", "decomposition", "timings")}
    kept["comparison"] = [{k: v for k, v in row.items() if k != "path"} for row in summary["comparison"]]
    return kept


@pytest.mark.slow
def test_demo_figures_do_not_depend_on_the_threads_of_the_caller(tmp_path):
    """Torch's and numba's sums depend on their thread counts; the demo fixes both while it runs."""
    runs = {}
    for threads in (1, 2):
        before = torch.get_num_threads(), numba.get_num_threads()
        torch.set_num_threads(threads)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            runs[threads] = run_demo(tmp_path / f"threads-{threads}", TINY)
            assert torch.get_num_threads() == threads  # restored afterwards
        finally:
            torch.set_num_threads(before[0])
            numba.set_num_threads(before[1])
    assert _figures(runs[1]) == _figures(runs[2])
    for name in OUTPUTS:
        assert (tmp_path / "threads-1" / name).read_bytes() == (tmp_path / "threads-2" / name).read_bytes(), name
    assert runs[1]["settings"]["threads"] == TINY.threads == 1


def test_fixed_threads_sets_both_libraries_and_restores_them():
    before = torch.get_num_threads(), numba.get_num_threads()
    with pytest.raises(RuntimeError, match="inside"):
        with fixed_threads(1):
            assert (torch.get_num_threads(), numba.get_num_threads()) == (1, 1)
            raise RuntimeError("inside")
    assert (torch.get_num_threads(), numba.get_num_threads()) == before
    with pytest.raises(InvalidArgumentError, match="NUMBA_NUM_THREADS"):
        with fixed_threads(numba.config.NUMBA_NUM_THREADS + 1):
            pass
    assert (torch.get_num_threads(), numba.get_num_threads()) == before


@pytest.mark.parametrize("threads", [0, -1, 1.5, None])
def test_demo_settings_refuse_a_thread_count_that_is_not_positive(threads):
    with pytest.raises(InvalidArgumentError, match="threads must be a positive integer"):
        replace(TINY, threads=threads)


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
