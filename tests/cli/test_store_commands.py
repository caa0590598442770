"""The CLI commands over stores (``npeff info``, ``verify``, ``merge``, ``card``, ``upgrade``) through CliRunner."""

import json
import os

import pytest
from click.testing import CliRunner

from npeff.cli.main import cli
from npeff.store import open_store
from npeff.store._layout import shard_data_path
from tests.store.helpers import flip_byte, piece


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_info_text_and_json(tmp_path):
    piece(tmp_path / "s", 0, 6)
    text = invoke("info", tmp_path / "s")
    assert text.exit_code == 0 and "m = 6 examples, r = 2, d = 32" in text.output
    assert "ssp-v1 (seed 5, d 32" in text.output
    as_json = invoke("info", tmp_path / "s", "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.output)["num_examples"] == 6


def test_cli_verify_merge_card(tmp_path):
    piece(tmp_path / "a", 0, 5)
    piece(tmp_path / "b", 5, 9)
    assert "OK: 5 examples in 2 shards" in invoke("verify", tmp_path / "a").output
    merged = invoke("merge", tmp_path / "m", tmp_path / "a", tmp_path / "b")
    assert merged.exit_code == 0 and "9 examples" in merged.output
    assert open_store(tmp_path / "m").manifest["provenance"]["command"].startswith("npeff ")
    carded = invoke("card", tmp_path / "m", "--name", "team's store")
    assert carded.exit_code == 0 and "team's store" in (tmp_path / "m" / "README.md").read_text()
    assert "OK: 9 examples" in invoke("verify", tmp_path / "m").output  # the card is part of the store
    assert invoke("upgrade", tmp_path / "m").output.strip() == f"{tmp_path / 'm'} is up to date"
    flip_byte(shard_data_path(tmp_path / "a", 1), 10, 1)
    bad = invoke("verify", tmp_path / "a")
    assert bad.exit_code == 1 and "shard 1 (examples 4-4)" in bad.output
    assert "Traceback" not in bad.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["info", "{tmp}/missing"], "no store at"),
        (["verify", "{tmp}"], "has no manifest.json"),
        (["merge", "{tmp}/out", "{tmp}/missing"], "no store at"),
        (["card", "{tmp}/missing"], "no store at"),
        (["upgrade", "{tmp}/missing"], "no store at"),
        (["card", "http://127.0.0.1:1/s"], "cannot read"),
        (["merge", "s3://bucket/out", "{tmp}/missing"], "only to a local directory"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("NPEFF_REMOTE_RETRIES", "1")  # the closed port fails at once
    result = invoke(*[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 1
    assert message in result.output and result.output.startswith("Error: ")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_refuses_incompatible_merge(tmp_path):
    piece(tmp_path / "a", 0, 4)
    piece(tmp_path / "b", 4, 8, projection={"kind": "ssp-v1", "seed": 9})
    result = invoke("merge", tmp_path / "m", tmp_path / "a", tmp_path / "b")
    assert result.exit_code == 1 and "not compatible" in result.output
    assert not os.path.exists(tmp_path / "m")


@pytest.mark.parametrize("command", ["info", "verify", "merge", "card", "upgrade", "demo", "check-projection", "build",
                                     "decompose", "fit", "top-examples", "tunings", "compare", "report"])
def test_cli_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Usage: " in result.output
    assert invoke(command, "-h").exit_code == 0
