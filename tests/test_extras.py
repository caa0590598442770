"""The core install without the extras: the commands that need one say which, in one line.

The extras' modules are hidden from a subprocess by an import hook (as if never installed); the
same was checked once in a fresh venv with ``pip install .`` only (see the README)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from npeff.extras import EXTRA_OF_MODULE, extra_for, missing_extra_message
from tests.fixtures import REVIEWS

REPO = Path(__file__).resolve().parents[1]
OLD = REPO / "tests" / "data" / "v0.1.0"
WITHOUT = """
import sys
hidden = set(sys.argv[1].split(","))

class Uninstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Uninstalled())
from npeff.cli.main import main
sys.argv = ["npeff", *sys.argv[2:]]
main()
"""


def npeff_without(extra: str, *args, cwd) -> subprocess.CompletedProcess:
    hidden = ",".join(module for module, owner in EXTRA_OF_MODULE.items() if owner == extra)
    return subprocess.run([sys.executable, "-c", WITHOUT, hidden, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def assert_one_line(result, pattern):
    import re

    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert re.fullmatch(pattern, lines[0]), lines[0]


def test_build_without_the_build_extra(tmp_path, tiny_models):
    (tmp_path / "task.yaml").write_text('formulation: label-tokens\ntemplate: "{text}"\nlabels: ["good", "bad"]\n')
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in REVIEWS))
    result = npeff_without("build", "build", tiny_models["gpt2"], "--data", "data.jsonl", "--task", "task.yaml",
                           "--out", "out.store", "--dim", 64, cwd=tmp_path)
    assert_one_line(result, r"Error: npeff build needs (transformers|datasets), which is not installed: "
                            r"pip install 'npeff\[build\]'")
    assert not (tmp_path / "out.store").exists()


def test_demo_without_the_build_extra(tmp_path):
    result = npeff_without("build", "demo", "--out", "demo", cwd=tmp_path)
    assert_one_line(result, r"Error: npeff demo needs (transformers|datasets), which is not installed: "
                            r"pip install 'npeff\[build\]'")
    assert not (tmp_path / "demo").exists()


def test_report_without_the_report_extra(tmp_path):
    result = npeff_without("report", "report", OLD / "decomposition", "--store", OLD / "store", "--out", "r.html",
                           cwd=tmp_path)
    assert_one_line(result, r"Error: npeff report needs (jinja2|matplotlib), which is not installed: "
                            r"pip install 'npeff\[report\]'")
    assert not (tmp_path / "r.html").exists()


def test_core_commands_run_without_any_extra(tmp_path):
    hidden = ",".join(EXTRA_OF_MODULE)
    for args in (["info", OLD / "store"], ["verify", OLD / "store"], ["top-examples", OLD / "decomposition",
                                                                       "--store", OLD / "store", "-k", "2"]):
        result = subprocess.run([sys.executable, "-c", WITHOUT, hidden, *map(str, args)], capture_output=True,
                                text=True, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)


@pytest.mark.parametrize("module, extra", [("transformers.models", "build"), ("numba.cuda", "cuda"),
                                           ("dask_cuda", "cuda"), ("xarray", "xarray"), ("scipy", None)])
def test_extra_of_a_missing_module(module, extra):
    error = ModuleNotFoundError(f"No module named {module!r}", name=module)
    assert extra_for(error) == extra
    message = missing_extra_message(error, "npeff x")
    assert message == (None if extra is None else f"npeff x needs {module.split('.')[0]}, which is not installed: "
                                                  f"pip install 'npeff[{extra}]'")
