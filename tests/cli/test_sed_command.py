"""``npeff build --divergence-gradient`` and ``npeff sed`` from the command line, then the analysis
commands on the result, and the one-line errors of bad input."""

import json

import pytest
from click.testing import CliRunner

from npeff.cli.main import cli
from npeff.store import open_decomposition, open_store
from tests.cli.test_build_command import TASK
from tests.fixtures import REVIEWS


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def paths(tmp_path, tiny_models):
    (tmp_path / "task.yaml").write_text(TASK)
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in REVIEWS * 4))
    return tmp_path, tiny_models


def build_divergence(root, models, *extra):
    return run("build", models["gpt2"], "--data", root / "data.jsonl", "--task", root / "task.yaml",
               "--divergence-gradient", "--dim", 256, "--out", root / "div", *extra)


def test_divergence_store_then_sed_then_analysis(paths):
    root, models = paths
    built = build_divergence(root, models)
    assert built.exit_code == 0, built.output
    assert "wrote 20 divergence gradients (r = 1, d = 256)" in built.output
    store = open_store(root / "div")
    assert store.config.kind == "divergence" and store.manifest["pef_spec"]["normalization"] == "none"
    learned = run("sed", root / "div", "--out", root / "sed", "-C", 4, "--steps", 50, "--batch-size", 16,
                  "--l1", 0.05, "--seed", 2)
    assert learned.exit_code == 0, learned.output
    assert "learned 4 directions (full) in 50 steps" in learned.output
    sed = open_decomposition(root / "sed")
    assert sed.method == "sed" and sed.config["l1"] == 0.05 and sed.config["seed"] == 2
    top = run("top-examples", root / "sed", "-k", 3, "--json")
    assert top.exit_code == 0, top.output
    assert [len(c["examples"]) for c in json.loads(top.output)] == [3, 3, 3, 3]
    tunings = run("tunings", root / "sed")
    assert tunings.exit_code == 0 and "components analysed" in tunings.output, tunings.output
    # U lives in the store's (projected parameter) space: the model can be perturbed along it
    perturbed = run("perturb", root / "sed", "--component", 0, "--top", 4, "--baseline", 6,
                    "--relative-magnitude", 0.05, "--json")
    assert perturbed.exit_code == 0, perturbed.output
    summary = json.loads(perturbed.output[perturbed.output.index("{"):])
    assert summary["components"] == [0] and summary["kl_ratio_geomean"] > 0
    report = run("report", root / "sed", "--out", root / "r.html")
    assert report.exit_code == 0, report.output
    again = run("sed", root / "div", "--out", root / "sed", "-C", 4, "--steps", 5)
    assert again.exit_code == 1 and "--overwrite" in again.output


@pytest.mark.parametrize("args, message", [
    (["sed", "{grad}", "--out", "{root}/x", "-C", "2"], "npeff sed decomposes divergence gradients"),
    (["sed", "{div}", "--out", "{root}/x", "-C", "0"], "must be an integer >= 1"),
    (["sed", "{div}", "--out", "{root}/x", "-C", "2", "--l1", "-1"], "the L1 weight λ must be a finite number >= 0"),
    (["sed", "{div}", "--out", "{root}/x", "-C", "2", "--rank", "1"], "--rank needs an unprojected store"),
    (["sed", "{div}", "--out", "{root}/x", "-C", "2", "--device", "tpu"], "use cpu, cuda or cuda:N"),
    (["build", "{gpt2}", "--data", "{root}/data.jsonl", "--task", "{root}/task.yaml", "--divergence-gradient",
      "--gradient", "--out", "{root}/x"], "--gradient and --divergence-gradient exclude each other"),
    (["build", "{gpt2}", "--data", "{root}/data.jsonl", "--task", "{root}/task.yaml", "--divergence-gradient",
      "--svd-rank", "1", "--out", "{root}/x"], "--svd-rank does not apply to --divergence-gradient"),
])
def test_bad_input_is_one_line(paths, args, message):
    root, models = paths
    assert build_divergence(root, models).exit_code == 0
    grad = run("build", models["gpt2"], "--data", root / "data.jsonl", "--task", root / "task.yaml", "--gradient",
               "--dim", 256, "--out", root / "grad")
    assert grad.exit_code == 0, grad.output
    names = {"root": root, "grad": root / "grad", "div": root / "div", "gpt2": models["gpt2"]}
    result = run(*[a.format(**names) for a in args])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and result.output.endswith(errors[0] + "\n") and "Traceback" not in result.output
    assert message in errors[0], errors[0]
    assert not (root / "x").exists()
