"""``npeff decompose`` and ``npeff fit`` through click."""

import numpy as np
import pytest
from click.testing import CliRunner

from npeff.cli.main import cli
from npeff.store import open_decomposition
from npeff.store.coefficients import open_coefficients
from tests import tolerances
from tests.ops.decomposition.helpers import make_store, planted


@pytest.fixture
def store(tmp_path):
    g, _, _ = planted(m=24, seed=10)
    return make_store(tmp_path / "s", g, shard=8).path


def test_decompose_and_fit(tmp_path, store):
    runner = CliRunner()
    result = runner.invoke(cli, ["decompose", str(store), "--out", str(tmp_path / "d"), "-C", "4",
                                 "--warmup-steps", "5", "--joint-steps", "20", "--warmup-lr", "0.01",
                                 "--joint-lr", "0.01", "--memory-budget", "4KB", "--checkpoint-every", "10"])
    assert result.exit_code == 0, result.output
    assert "decomposed 24 examples into 4 components" in result.output
    assert "0 examples on the device" in result.output and "24 streamed from disk" in result.output
    decomposition = open_decomposition(tmp_path / "d")
    assert decomposition.W.shape == (24, 4) and decomposition.losses.shape == (25,)
    assert decomposition.manifest["provenance"]["command"].startswith("npeff decompose")
    assert decomposition.config["joint_lr"] == 0.01 and decomposition.meta.memory_budget == 4000
    np.testing.assert_allclose(np.linalg.norm(decomposition.H, axis=1), 1.0, **tolerances.FLOAT32_VS_FLOAT64)
    fitted = runner.invoke(cli, ["fit", str(tmp_path / "d"), str(store), "--out", str(tmp_path / "c"),
                                 "--steps", "5"])
    assert fitted.exit_code == 0, fitted.output
    assert "fitted coefficients [24, 4]" in fitted.output
    assert open_coefficients(tmp_path / "c").W.shape == (24, 4)


def test_help_shows_the_defaults_of_the_config():
    result = CliRunner().invoke(cli, ["decompose", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # as words, whatever the terminal's width
    for expected in ("--warmup-steps INTEGER H-only steps (W frozen). [default: 1000]",
                     "--joint-lr FLOAT Learning rate of joint steps. [default: 0.0003]",
                     "--dtype [float32|float64] Compute dtype. [default: float32]"):
        assert expected in text


@pytest.mark.parametrize("args, message", [
    (["decompose", "{store}", "--out", "{tmp}/x", "-C", "0"], "Error: the number of components"),
    (["decompose", "{store}", "--out", "{tmp}/x", "-C", "2", "--memory-budget", "lots"], "Error: memory budget"),
    (["decompose", "{store}", "--out", "{tmp}/x", "-C", "2", "--device", "tpu"], "Error: unknown device"),
    (["decompose", "{tmp}/nowhere", "--out", "{tmp}/x", "-C", "2"], "Error: no store at"),
    (["decompose", "{store}", "--out", "{tmp}/x", "-C", "2", "--resume"], "Error: nothing to resume"),
    (["fit", "{tmp}/nope", "{store}", "--out", "{tmp}/y"], "Error: no decomposition at"),
], ids=["components", "budget", "device", "no-store", "nothing-to-resume", "no-decomposition"])
def test_bad_input_is_a_one_line_error(tmp_path, store, args, message):
    result = CliRunner().invoke(cli, [a.format(store=store, tmp=tmp_path) for a in args])
    assert result.exit_code == 1
    assert result.output.startswith(message) and result.output.count("\n") == 1, result.output


def test_normalisation_and_no_normalize(tmp_path):
    from npeff.store import create_store
    from tests.ops.decomposition.helpers import random_pefs

    writer = create_store(tmp_path / "raw", rank=3, dim=32, projection={"kind": "external"})  # says nothing
    writer.append((random_pefs(m=10, seed=4) * 5).numpy().astype(np.float32))
    raw = str(writer.finalize().path)
    runner = CliRunner()
    short = ["-C", "2", "--warmup-steps", "2", "--joint-steps", "2", "--warmup-lr", "0.01", "--joint-lr", "0.01"]
    assert runner.invoke(cli, ["decompose", raw, "--out", str(tmp_path / "d"), *short]).exit_code == 0
    normalised = open_decomposition(tmp_path / "d")
    assert normalised.meta.normalization == {"normalize": True, "store": None, "scaled": True}
    np.testing.assert_allclose(normalised.array("pef_norms"), 25.0, **tolerances.FLOAT32_STORED_PEF)
    result = runner.invoke(cli, ["decompose", raw, "--out", str(tmp_path / "e"), *short, "--no-normalize"])
    assert result.exit_code == 0, result.output
    as_stored = open_decomposition(tmp_path / "e")
    assert as_stored.config["normalize"] is False and as_stored.meta.normalization["scaled"] is False
    assert not (tmp_path / "e" / "pef_norms.npy").exists()
    fitted = runner.invoke(cli, ["fit", str(tmp_path / "e"), raw, "--out", str(tmp_path / "c"), "--steps", "2",
                                 "--no-normalize"])
    assert fitted.exit_code == 0, fitted.output
    assert open_coefficients(tmp_path / "c").meta.normalization == {"normalize": False, "store": None,
                                                                     "scaled": False}
    help_text = " ".join(runner.invoke(cli, ["fit", "--help"]).output.split())
    assert "--normalize / --no-normalize" in help_text
    assert "--normalize / --no-normalize" in " ".join(runner.invoke(cli, ["decompose", "--help"]).output.split())


def test_fit_with_non_finite_components_is_a_one_line_error(tmp_path, store):
    from npeff.store.arrays import save_array

    runner = CliRunner()
    assert runner.invoke(cli, ["decompose", str(store), "--out", str(tmp_path / "d"), "-C", "2",
                               "--warmup-steps", "1", "--joint-steps", "1"]).exit_code == 0
    H = np.load(tmp_path / "d" / "H.npy")
    H[0, 0] = np.nan
    save_array(tmp_path / "d" / "H.npy", H)
    result = runner.invoke(cli, ["fit", str(tmp_path / "d"), str(store), "--out", str(tmp_path / "c"), "--steps", "2"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: the components H of ") and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "c").exists()
