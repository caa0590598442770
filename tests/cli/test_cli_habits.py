"""What every command shares: NPEFF_* environment variables, -v/-q, progress on stderr (a bar on a
terminal, log lines elsewhere) and --json on stdout."""

import dataclasses
import io
import json
import logging
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from npeff import progress
from npeff.cli.main import cli
from npeff.store import open_decomposition, open_store, store_info, verify_store
from npeff.store._layout import shard_data_path
from npeff.store.coefficients import open_coefficients
from tests.ops.decomposition.helpers import make_store, planted
from tests.store.helpers import flip_byte, piece

SHORT_RUN = ["-C", "3", "--warmup-steps", "2", "--joint-steps", "3", "--warmup-lr", "0.01", "--joint-lr", "0.01"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No NPEFF_* or TQDM_DISABLE from the caller's shell; the progress settings reset afterwards."""
    for name in list(os.environ):
        if name.startswith("NPEFF_") and name != "NPEFF_REAL_CUDA" or name == "TQDM_DISABLE":
            monkeypatch.delenv(name)
    yield
    progress.configure(level=logging.INFO, interval=None)


@pytest.fixture
def store(tmp_path):
    g, _, _ = planted(m=12, seed=3)
    return make_store(tmp_path / "s", g, shard=4).path


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def progress_lines(text, desc):
    return [line for line in text.splitlines() if line.startswith(f"npeff: {desc} ")]


# --- environment variables -----------------------------------------------------------------------

def test_an_environment_variable_sets_an_option(tmp_path):
    piece(tmp_path / "p", 0, 6)
    as_json = invoke("info", tmp_path / "p", env={"NPEFF_INFO_JSON": "1"})
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == json.loads(json.dumps(store_info(open_store(tmp_path / "p"))))
    as_text = invoke("info", tmp_path / "p", env={"NPEFF_INFO_JSON": "0"})
    assert as_text.exit_code == 0 and "m = 6 examples" in as_text.stdout


def test_environment_variables_set_a_decomposition_and_the_command_line_wins(tmp_path, store):
    env = {"NPEFF_DECOMPOSE_N_COMPONENTS": "4", "NPEFF_DECOMPOSE_WARMUP_STEPS": "2",
           "NPEFF_DECOMPOSE_JOINT_STEPS": "3", "NPEFF_DECOMPOSE_MEMORY_BUDGET": "4KB", "NPEFF_DECOMPOSE_SEED": "7"}
    result = invoke("decompose", store, "--out", tmp_path / "d", "--seed", "2", env=env)
    assert result.exit_code == 0, result.output
    decomposition = open_decomposition(tmp_path / "d")
    assert decomposition.H.shape[0] == 4 and len(decomposition.losses) == 5
    assert decomposition.meta.memory_budget == 4000
    assert decomposition.config["seed"] == 2  # the option given, not NPEFF_DECOMPOSE_SEED


def test_group_options_read_npeff_variables(tmp_path, store):
    quiet = invoke("decompose", store, "--out", tmp_path / "d", *SHORT_RUN,
                   env={"NPEFF_QUIET": "1", "NPEFF_PROGRESS_INTERVAL": "0"})
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""
    bad = invoke("info", store, env={"NPEFF_PROGRESS_INTERVAL": "soon"})
    assert bad.exit_code == 2 and "--progress-interval" in bad.output and "soon" in bad.output


def test_help_shows_every_option_s_environment_variable():
    top = invoke("--help")
    assert top.exit_code == 0
    words = "".join(top.output.split())
    for name in ("NPEFF_VERBOSE", "NPEFF_QUIET", "NPEFF_PROGRESS_INTERVAL", "NPEFF_<COMMAND>_<OPTION>"):
        assert name in words
    assert "NPEFF_VERSION" not in words  # --version reads no variable
    for name, command in cli.commands.items():
        text = invoke(name, "--help")
        assert text.exit_code == 0, text.output
        words = "".join(text.output.split())  # whatever the terminal's width
        for option in command.params:
            if not isinstance(option, click.Option):
                continue
            flags = [opt for opt in option.opts if opt.startswith("--")]
            flag = flags[0][2:] if flags else option.name
            expected = f"NPEFF_{name}_{flag}".replace("-", "_").upper()
            assert f"[envvar:{expected}]" in words, (name, expected)
    decompose = " ".join(invoke("decompose", "--help").output.split())
    assert "[default: 1000] [env var: NPEFF_DECOMPOSE_WARMUP_STEPS]" in decompose


# --- logging and progress ------------------------------------------------------------------------

def run_npeff(*args, **env):
    """``python -m npeff.cli.main ARGS`` with stderr on a pipe (not a terminal)."""
    clean = {name: value for name, value in os.environ.items()
             if not (name.startswith("NPEFF_") or name == "TQDM_DISABLE")}
    return subprocess.run([sys.executable, "-m", "npeff.cli.main", *[str(a) for a in args]],
                          capture_output=True, text=True, env={**clean, **env})


def test_progress_without_a_terminal_is_log_lines(tmp_path, store):
    done = run_npeff("decompose", store, "--out", tmp_path / "d", *SHORT_RUN, NPEFF_PROGRESS_INTERVAL="0")
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\r" not in done.stdout
    lines = progress_lines(done.stderr, "decompose")
    assert lines[0].startswith("npeff: decompose 1/5 steps (20%), ") and "step/s, eta " in lines[0]
    assert "loss=" in lines[0]
    assert lines[-1].startswith("npeff: decompose 5/5 steps (100%) in ") and len(lines) == 5
    assert "streamed from disk" in done.stderr  # the plan, a log line too
    assert done.stdout.startswith("decomposed 12 examples into 3 components")
    rare = run_npeff("--progress-interval", "3600", "decompose", store, "--out", tmp_path / "e", *SHORT_RUN)
    assert rare.returncode == 0, rare.stderr
    assert [line.split(" in ")[0] for line in progress_lines(rare.stderr, "decompose")] == [
        "npeff: decompose 5/5 steps (100%)"]  # only the last line within the interval


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("variable, bar", [(None, True), ("0", True), ("false", True), ("1", False),
                                           ("yes", False)])
def test_tqdm_disable_turns_a_terminal_s_bar_into_log_lines(monkeypatch, variable, bar):
    from tqdm.std import tqdm

    if variable is not None:
        monkeypatch.setenv("TQDM_DISABLE", variable)
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    progress.configure(level=logging.INFO, interval=0)
    with progress.progress_bar(total=3, desc="work", unit="step") as shown:
        for _ in range(3):
            shown.update(1)
    assert isinstance(shown, tqdm) == bar
    if bar:
        assert "\r" in terminal.getvalue()
    else:
        assert "\r" not in terminal.getvalue()
        assert progress_lines(terminal.getvalue(), "work") == [
            "npeff: work 1/3 steps (33%), " + terminal.getvalue().split("(33%), ")[1].splitlines()[0],
            "npeff: work 2/3 steps (67%), " + terminal.getvalue().split("(67%), ")[1].splitlines()[0],
            "npeff: work 3/3 steps (100%) in " + terminal.getvalue().split("(100%) in ")[1].splitlines()[0]]


def test_quiet_shows_no_bar_on_a_terminal(monkeypatch):
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    progress.configure(level=logging.WARNING, interval=0)
    assert list(progress.progress_bar(range(4), desc="work", unit="step")) == [0, 1, 2, 3]
    assert terminal.getvalue() == ""


def test_quiet_silences_and_verbose_shows_debug_lines(tmp_path, store):
    env = {"NPEFF_PROGRESS_INTERVAL": "0"}
    normal = invoke("decompose", store, "--out", tmp_path / "a", *SHORT_RUN, env=env)
    assert normal.exit_code == 0, normal.output
    assert progress_lines(normal.stderr, "decompose") and "npeff: debug:" not in normal.stderr
    quiet = invoke("-q", "decompose", store, "--out", tmp_path / "b", *SHORT_RUN, env=env)
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "" and quiet.stdout.startswith("decomposed 12 examples")
    verbose = invoke("-v", "verify", store)
    assert verbose.exit_code == 0, verbose.output
    assert "npeff: debug: verify: progress as log lines every 30 s (stderr is not a terminal)" in verbose.stderr
    assert verbose.stdout.startswith("OK: 12 examples in 3 shards")
    both = invoke("-q", "-v", "info", store)
    assert both.exit_code == 2 and "exclude each other" in both.output


# --- --json ---------------------------------------------------------------------------------------

def test_decompose_and_fit_json(tmp_path, store):
    env = {"NPEFF_PROGRESS_INTERVAL": "0"}
    result = invoke("decompose", store, "--out", tmp_path / "d", *SHORT_RUN, "--json", env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout holds the JSON alone
    assert progress_lines(result.stderr, "decompose")  # the progress went to stderr
    decomposition = open_decomposition(tmp_path / "d")
    assert summary["path"] == str(decomposition.path) and summary["store"] == str(store)
    assert (summary["num_examples"], summary["n_components"], summary["dim"]) == (12, 3, decomposition.H.shape[1])
    assert summary["steps"] == len(decomposition.losses) == 5
    assert summary["initial_loss"] == float(decomposition.losses[0])
    assert summary["final_loss"] == float(decomposition.losses[-1]) == decomposition.meta.final_loss
    assert summary["median_step_seconds"] == decomposition.meta.median_step_seconds and summary["seconds"] > 0
    fitted = invoke("fit", tmp_path / "d", store, "--out", tmp_path / "c", "--steps", "4", "--json", env=env)
    assert fitted.exit_code == 0, fitted.output
    summary = json.loads(fitted.stdout)
    coefficients = open_coefficients(tmp_path / "c")
    assert (summary["num_examples"], summary["n_components"]) == coefficients.W.shape
    assert summary["steps"] == 4 and summary["path"] == str(tmp_path / "c")
    assert summary["decomposition"] == str(tmp_path / "d") and summary["store"] == str(store)


def test_verify_json(tmp_path):
    piece(tmp_path / "p", 0, 5)
    sound = invoke("verify", tmp_path / "p", "--json")
    assert sound.exit_code == 0, sound.output
    report = verify_store(tmp_path / "p")
    assert json.loads(sound.stdout) == {"path": report.path, "status": "finalized", "num_shards": 2,
                                        "num_examples": 5, "ok": True, "problems": [], "notes": []}
    flip_byte(shard_data_path(tmp_path / "p", 1), 10, 1)
    broken = invoke("verify", tmp_path / "p", "--json")
    assert broken.exit_code == 1
    found = json.loads(broken.stdout)
    assert found["ok"] is False and found["problems"] == verify_store(tmp_path / "p").problems
    assert len(found["problems"]) == 1 and "shard 1 (examples 4-4)" in found["problems"][0]
    assert broken.stderr.startswith("Error: ") and "failed verification: 1 problem(s)" in broken.stderr
    assert "Traceback" not in broken.output


TASK = """formulation: label-tokens
template: "review : {text} sentiment :"
labels: ["good", "bad"]
label_field: label
"""


def test_build_dry_run_and_build_json(tmp_path, tiny_models):
    from npeff.ops.pef import PefSpec, build_store, load_examples, load_model_and_tokenizer
    from npeff.ops.pef.tasks import TaskSpec
    from tests.fixtures import REVIEWS

    (tmp_path / "task.yaml").write_text(TASK)
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in REVIEWS))
    base = ["build", tiny_models["llama"], "--data", tmp_path / "data.jsonl", "--task", tmp_path / "task.yaml",
            "--max-examples", "4"]
    dry = invoke(*base, "--out", tmp_path / "x", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    task = TaskSpec.from_yaml(tmp_path / "task.yaml")
    network, tokenizer = load_model_and_tokenizer(tiny_models["llama"], task.formulation)
    expected = build_store(network, load_examples(str(tmp_path / "data.jsonl")), task, tmp_path / "x",
                           tokenizer=tokenizer, pef=PefSpec(kind="exact"), max_examples=4, dry_run=True)
    assert plan == {"dry_run": True, **dataclasses.asdict(expected), "example_range": [0, 4],
                    "store_bytes": expected.store_bytes}
    assert (plan["num_examples"], plan["rank"], plan["dim"]) == (4, 1, 8192)  # two labels: C - 1 rows
    assert not (tmp_path / "x").exists()
    built = invoke(*base, "--out", tmp_path / "s", "--dim", "32", "--json")
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout) == json.loads(json.dumps(store_info(open_store(tmp_path / "s"))))


def test_a_build_without_a_terminal_writes_no_carriage_returns(tmp_path, tiny_models):
    """The data loading and checkpoint loading bars of datasets and transformers are off too."""
    from tests.fixtures import REVIEWS

    (tmp_path / "task.yaml").write_text(TASK)
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in REVIEWS))
    result = run_npeff("--progress-interval", "0", "build", tiny_models["gpt2"], "--data", tmp_path / "data.jsonl",
                       "--task", tmp_path / "task.yaml", "--out", tmp_path / "s", "--dim", "32")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "\r" not in result.stdout
    assert "npeff: build 5/5" in result.stderr  # progress as log lines instead
