"""``npeff build`` end to end on tiny local models and local data files."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from npeff.cli.main import cli
from npeff.store import open_store
from tests.fixtures import REVIEWS

TASK = """formulation: label-tokens
template: "review : {text} sentiment :"
labels: ["good", "bad"]
label_field: label
"""


@pytest.fixture
def files(tmp_path):
    (tmp_path / "task.yaml").write_text(TASK)
    with open(tmp_path / "data.jsonl", "w") as handle:
        for row in REVIEWS:
            handle.write(json.dumps(row) + "\n")
    (tmp_path / "data.csv").write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in REVIEWS))
    pq.write_table(pa.Table.from_pylist(REVIEWS), tmp_path / "data.parquet")
    return tmp_path


def run(*args):
    return CliRunner().invoke(cli, ["build", *[str(a) for a in args]])


@pytest.mark.parametrize("data", ["data.jsonl", "data.csv", "data.parquet"])
def test_build_from_local_files(files, tiny_models, data):
    out = files / "out.store"
    result = run(tiny_models["gpt2"], "--data", files / data, "--task", files / "task.yaml", "--out", out,
                 "--dim", 64, "--eps", 3, "--batch-size", 2)
    assert result.exit_code == 0, result.output
    store = open_store(out)
    assert (store.num_examples, store.rank, store.dim) == (5, 3, 64)
    assert store.examples["label"].to_pylist() == [r["label"] for r in REVIEWS]
    manifest = store.manifest
    assert manifest["pef_spec"]["pef"] == {"kind": "eps", "eps_rows": 3, "svd_rank": None, "seed": 0}
    assert manifest["model"]["name"] == tiny_models["gpt2"]
    assert manifest["provenance"]["command"].startswith("npeff build")


def test_build_gradient_shard_and_dry_run(files, tiny_models):
    base = [tiny_models["llama"], "--data", files / "data.jsonl", "--task", files / "task.yaml"]
    dry = run(*base, "--out", files / "x", "--dry-run", "--max-examples", 4)
    # two classes: the exact PEF's C - 1 = 1 complement row
    assert dry.exit_code == 0 and "m = 4 examples" in dry.output and "r = 1; d = 8192" in dry.output
    assert not (files / "x").exists()
    part = run(*base, "--out", files / "p1", "--gradient", "--dim", 32, "--shard", "1/2")
    assert part.exit_code == 0, part.output
    store = open_store(files / "p1")
    assert store.rank == 1 and store.num_examples == 3
    assert store.examples["source_id"].to_pylist() == ["2", "3", "4"]
    assert np.isfinite(store.read()).all()


def test_resume_and_overwrite_flags(files, tiny_models):
    base = [tiny_models["gpt2"], "--data", files / "data.jsonl", "--task", files / "task.yaml",
            "--out", files / "s", "--dim", 32]
    assert run(*base).exit_code == 0
    again = run(*base)
    assert again.exit_code == 1 and "already exists" in again.output
    assert run(*base, "--overwrite").exit_code == 0
    different = run(*base[:-1], 64, "--resume")
    assert different.exit_code == 1 and "dim: existing 32  vs  requested 64" in different.output


@pytest.mark.parametrize("args,message", [
    (["{missing_model}", "--data", "{dir}/data.jsonl"], "does not exist"),
    (["{gpt2}", "--data", "{dir}/nope.jsonl"], "does not exist"),
    (["{gpt2}", "--data", "{dir}/task.yaml"], "must be .jsonl, .json, .csv or .parquet"),
    (["{gpt2}", "--data", "{dir}/data.jsonl", "--shard", "3/2"], "0 <= i < N"),
    (["{gpt2}", "--data", "{dir}/data.jsonl", "--gradient", "--eps", "2"], "exclude each other"),
    (["{vit}", "--data", "{dir}/data.jsonl"], "cannot be loaded as a causal language model"),
])
def test_bad_inputs_give_one_line_and_no_store(files, tiny_models, args, message):
    from transformers import ViTConfig, ViTModel

    vit = files / "vit"
    ViTModel(ViTConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8,
                       image_size=8, patch_size=4)).save_pretrained(vit)
    from tests.fixtures import tiny_tokenizer

    tiny_tokenizer().save_pretrained(vit)
    values = {"missing_model": files / "no-model", "dir": files, "gpt2": tiny_models["gpt2"], "vit": vit}
    result = run(*[a.format(**values) for a in args], "--task", files / "task.yaml", "--out", files / "s")
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (files / "s").exists()


def test_bad_template_field_is_caught_before_loading_the_model(files, tiny_models):
    (files / "task.yaml").write_text(TASK.replace("{text}", "{sentence}"))
    result = run(tiny_models["gpt2"], "--data", files / "data.jsonl", "--task", files / "task.yaml",
                 "--out", files / "s")
    assert result.exit_code == 1 and "no field 'sentence'" in result.output
    assert "fields present: label, text" in result.output and not (files / "s").exists()
