"""The ``npeff`` entry point: help, version, demo, error reporting."""

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from npeff import __version__
from npeff.cli.main import cli


def test_version_and_help():
    runner = CliRunner()
    version = runner.invoke(cli, ["--version"])
    assert version.exit_code == 0 and __version__ in version.output
    for flag in ("-h", "--help"):
        result = runner.invoke(cli, [flag])
        assert result.exit_code == 0
        listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()}
        assert listed == {"build", "decompose", "fit", "demo", "check-projection", "info", "verify", "merge",
                          "card", "upgrade", "top-examples", "tunings", "compare", "report", "perturb", "cluster", "sae", "sed",
                          "spectrum"}


def test_check_projection():
    result = CliRunner().invoke(cli, ["check-projection", "--log2-n", "14", "--dim", "256", "--rows", "8",
                                      "--backend", "cpu"])
    assert result.exit_code == 0, result.output
    assert "projection check OK" in result.output and "on cpu" in result.output


def test_bad_option_is_a_one_line_error():
    result = CliRunner().invoke(cli, ["check-projection", "--dim", "100", "--log2-n", "10", "--backend", "cpu"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: projection dimension d must be a positive multiple of 32, got 100; "
        "pick e.g. 1024 or 8192")


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "npeff"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_the_command_loads_no_heavy_library_until_a_command_runs():
    """``npeff --help`` stays fast: the CLI modules import no torch, transformers or tensorstore."""
    code = ("import sys, npeff.cli.main\n"
            "print(sorted(m for m in ('torch', 'transformers', 'tensorstore', 'numba') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
