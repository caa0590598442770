"""``npeff cluster``, ``npeff sae``, ``npeff build --activations`` and ``npeff tunings`` over several
methods, from the command line."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from npeff.cli.main import cli
from npeff.store import create_store, open_decomposition
from tests.cli.test_build_command import TASK
from tests.fixtures import REVIEWS
from tests.ops.baselines.test_gradient_clustering import blobs


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def paths(tmp_path, tiny_models):
    x = blobs(m=120, d=16, k=3, seed=2)
    writer = create_store(tmp_path / "grad", rank=1, dim=16, projection={"kind": "external"}, kind="gradient")
    rows = [{"text": f"example {i}", "label": i % 2, "prediction": int(x[i, 0] > 0)} for i in range(120)]
    writer.append(x[:, None, :].astype(np.float32), rows)
    writer.finalize()
    (tmp_path / "task.yaml").write_text(TASK)
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in REVIEWS * 4))
    return tmp_path, tiny_models


def test_cluster_then_analyse(paths):
    root, _ = paths
    result = run("cluster", root / "grad", "--out", root / "clusters", "-k", 3, "--seed", 1)
    assert result.exit_code == 0, result.output
    assert "clustered 120 examples: 3 clusters" in result.output and "converged" in result.output
    assert open_decomposition(root / "clusters").method == "gradient-clustering"
    top = run("top-examples", root / "clusters", "-k", 2, "--json")
    assert top.exit_code == 0, top.output
    assert [len(c["examples"]) for c in json.loads(top.output)] == [2, 2, 2]
    tunings = run("tunings", root / "clusters")
    assert tunings.exit_code == 0 and "components analysed" in tunings.output and "tuning classifier" in tunings.output


def test_activations_then_sae_and_the_method_table(paths):
    root, models = paths
    built = run("build", models["gpt2"], "--data", root / "data.jsonl", "--task", root / "task.yaml",
                "--activations", "--out", root / "acts")
    assert built.exit_code == 0, built.output
    assert "wrote 20 activations (block 1, d = 16)" in built.output
    trained = run("sae", root / "acts", "--out", root / "sae", "--n-latents", 8, "-k", 2, "--steps", 20,
                  "--batch-size", 8)
    assert trained.exit_code == 0, trained.output
    assert "trained 8 latents" in trained.output
    run("cluster", root / "grad", "--out", root / "clusters", "-k", 3)
    table = run("tunings", root / "clusters", root / "sae")
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:6] == ["method", "C", "analysed", "Pred", "Label", "LnP"]
    assert lines[1].startswith("clusters (gradient-clustering)") and lines[2].startswith("sae (sae)")
    data = json.loads(run("tunings", root / "clusters", root / "sae", "--json").output)
    assert [m["method"] for m in data["methods"]] == ["gradient-clustering", "sae"]
    assert data["methods"][0]["classifier"]["threshold"] == 0.75


@pytest.mark.parametrize("args, message", [
    (["cluster", "{acts}", "--out", "{root}/c", "-k", "2"], "gradient clustering needs a store of gradients"),
    (["cluster", "{grad}", "--out", "{root}/c", "-k", "500"], "K = 500 clusters need at least 500"),
    (["cluster", "{grad}", "--out", "{root}/c", "-k", "0"], "must be an integer >= 1"),
    (["sae", "{grad}", "--out", "{root}/s", "--n-latents", "4", "-k", "2"], "the SAE trains on an activation store"),
    (["sae", "{acts}", "--out", "{root}/s", "--n-latents", "4", "-k", "5"], "cannot exceed the 4 latents"),
    (["build", "{gpt2}", "--data", "{root}/data.jsonl", "--task", "{root}/task.yaml", "--activations",
      "--layer", "2", "--out", "{root}/x"], "--layer must be a block index"),
    (["build", "{gpt2}", "--data", "{root}/data.jsonl", "--task", "{root}/task.yaml", "--layer", "0",
      "--out", "{root}/x"], "--layer applies to --activations"),
    (["tunings", "{root}/a", "{root}/b", "--store", "{grad}"], "--store applies to one decomposition"),
])
def test_bad_input_is_one_line(paths, args, message):
    root, models = paths
    if "{acts}" in " ".join(args):
        run("build", models["gpt2"], "--data", root / "data.jsonl", "--task", root / "task.yaml",
            "--activations", "--out", root / "acts")
    names = {"root": root, "grad": root / "grad", "acts": root / "acts", "gpt2": models["gpt2"]}
    result = run(*[a.format(**names) for a in args])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]  # after any progress bars
    assert len(errors) == 1 and result.output.endswith(errors[0] + "\n") and "Traceback" not in result.output
    assert message in errors[0]
    assert not (root / "x").exists() and not (root / "c").exists() and not (root / "s").exists()
