"""The planted demo: its data rules, the alignment measure, and the whole pipeline at a reduced size."""

import json
import random

import numpy as np
import pytest
from click.testing import CliRunner

from npeff.cli.main import cli
from npeff.errors import StoreExistsError
from npeff.ops.demo.pipeline import (NEGATIVE, POSITIVE, STRATEGIES, TOPICS_NEGATIVE, TOPICS_POSITIVE, DemoSettings,
                                     alignment, make_dataset, make_example, run_demo)

#: the reduced size run by the tests (a few seconds) and its stated alignment threshold
SMALL = DemoSettings(train_examples=4000, pef_examples=480, dim=1024, n_components=12, warmup_steps=100,
                     joint_steps=800, warmup_lr=1e-3, joint_lr=1e-3)
ALIGNED_AT_LEAST = 0.5


def sentiment(word):
    return 1 if word in POSITIVE else 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_labels_follow_each_strategy_rule(strategy):
    rng = random.Random(3)
    for _ in range(200):
        example = make_example(rng, strategy)
        words = example["text"].split()
        adjectives = [w for w in words if w in POSITIVE + NEGATIVE]
        if strategy == "sentiment word":
            assert len(adjectives) == 1 and "not" not in words and example["label"] == sentiment(adjectives[0])
        elif strategy == "negation":
            assert "not" in words and example["label"] == 1 - sentiment(adjectives[0])
        elif strategy == "contrast":
            assert "but" in words and example["label"] == sentiment(adjectives[-1]) != sentiment(adjectives[0])
        else:
            assert not adjectives and example["label"] == (1 if words[1] in TOPICS_POSITIVE else 0)
            assert words[1] in TOPICS_POSITIVE + TOPICS_NEGATIVE


def test_dataset_is_balanced_and_seeded():
    rows = make_dataset(400, 7)
    assert rows == make_dataset(400, 7) and rows != make_dataset(400, 8)
    counts = {s: sum(r["strategy"] == s for r in rows) for s in STRATEGIES}
    assert set(counts.values()) == {100}
    assert all(r["id"].startswith(r["strategy"].replace(" ", "-")) for r in rows)
    assert 0.4 < np.mean([r["label"] for r in rows]) < 0.6


def test_alignment_measure():
    strategies = ["a"] * 40 + ["b"] * 40
    W = np.zeros((80, 3))
    W[:40, 0] = np.linspace(1, 0.1, 40)  # pure a
    W[32:48, 1] = np.linspace(1, 0.1, 16)  # half a, half b
    W[60:, 1] = 0.01
    W[:10, 2] = 1.0  # too small to analyse
    result = alignment(W, strategies)
    assert result["n_analysed"] == 2
    assert [c["purity"] for c in result["components"]] == [1.0, 0.5]
    assert result["aligned_fraction"] == 0.5 and result["strategies_found"] == ["a"]
    assert 0.5 <= result["chance_mean_purity"] < 0.8 and result["chance_aligned_fraction"] < 0.2


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
    page = (tmp_path / "demo" / "report.html").read_text()
    assert page.count('class="card"') == SMALL.n_components

    # the files it leaves work with the commands
    result = CliRunner().invoke(cli, ["top-examples", str(tmp_path / "demo" / "decomposition"), "-k", "3",
                                      "--component", "0"])
    assert result.exit_code == 0 and "label " in result.output
    with pytest.raises(StoreExistsError, match="--overwrite"):
        run_demo(tmp_path / "demo", SMALL)


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    result = CliRunner().invoke(cli, ["demo", "--quick", "--out", str(tmp_path / "mine"), "--overwrite"])
    assert result.exit_code == 1 and "not an npeff demo folder" in result.output
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"
