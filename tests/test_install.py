"""The package installs under one namespace with a regular (non-editable) install too."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IMPORTS = (
    "import npeff, npeff.errors, npeff.store, npeff.ops, npeff.cuda_ops, npeff.cli.main; "
    "print(npeff.store.__file__); print(npeff.cuda_ops.__file__)"
)


@pytest.mark.slow
def test_regular_install_imports(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--quiet",
         "--target", str(target), str(REPO)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, build.stderr
    # no generic top-level names land in site-packages
    top_level = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info")}
    assert top_level == {"npeff", "bin"} or top_level == {"npeff"}
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert all(line.startswith(str(target)) for line in out.stdout.split())
    assert (target / "npeff" / "ops" / "report" / "templates" / "report.html.j2").is_file()  # the report's template


def test_editable_install_imports_from_the_source_tree(tmp_path):
    out = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    store_file, cuda_file = out.stdout.split()
    assert store_file == str(REPO / "npeff_store" / "__init__.py")
    assert cuda_file == str(REPO / "cuda_ops" / "__init__.py")
