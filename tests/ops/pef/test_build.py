"""The build loop (ops/pef/build.py): shards, resuming, the dry-run plan, recorded label names, and
the arguments refused before anything is written."""

import numpy as np
import pytest
import torch

from npeff.errors import InvalidArgumentError
from npeff.ops import PefSpec, TaskSpec, build_store
from npeff.ops.pef.build import example_range, parse_shard
from npeff.ops.pef.tasks import TaskError
from npeff.store import merge_stores, open_store
from tests import tolerances
from tests.fixtures import REVIEWS
from tests.ops.pef.references import TASKS, load


def test_shards_of_a_build_merge_to_the_whole(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    whole = build_store(model, REVIEWS, task, tmp_path / "whole", tokenizer=tokenizer, dim=64)
    parts = [build_store(model, REVIEWS, task, tmp_path / f"part{i}", tokenizer=tokenizer, dim=64,
                         shard=(i, 2)) for i in range(2)]
    assert [p.num_examples for p in parts] == [2, 3]
    assert parts[0].fingerprint == whole.fingerprint
    merged = merge_stores(tmp_path / "merged", [p.path for p in parts])
    np.testing.assert_allclose(merged.read(), whole.read(), **tolerances.FLOAT32_STORED_ROWS)
    assert merged.examples["source_id"].to_pylist() == [str(i) for i in range(5)]


@pytest.mark.parametrize("total,max_examples,shard,expected", [
    (10, None, None, (0, 10)), (10, 7, None, (0, 7)), (10, 20, None, (0, 10)), (10, 7, (2, 3), (4, 7)),
    (10, None, (0, 3), (0, 3)), (5, None, (1, 2), (2, 5)),
])
def test_example_range(total, max_examples, shard, expected):
    assert example_range(total, max_examples, shard) == expected


def test_parse_shard():
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None


@pytest.mark.parametrize("text,message", [
    ("1", "takes i/N"), ("a/4", "takes i/N"), ("1/2/3", "takes i/N"), ("4/4", "0 <= i < N"), ("-1/4", "0 <= i < N"),
])
def test_bad_shards_are_refused(text, message):
    with pytest.raises(InvalidArgumentError, match=message):
        parse_shard(text)


class Interrupting(list):
    """Examples that raise when index ``stop_at`` is read for its PEF (a build killed half-way; the
    check of the data before the build iterates over them, which does not index)."""

    def __init__(self, items, stop_at):
        super().__init__(items)
        self.stop_at = stop_at

    def __getitem__(self, index):
        if index == self.stop_at:
            raise KeyboardInterrupt
        return super().__getitem__(index)


def test_resume_after_interruption(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    many = [dict(REVIEWS[i % 5], text=REVIEWS[i % 5]["text"] + " very" * (i // 5)) for i in range(12)]
    reference = build_store(model, many, task, tmp_path / "ref", tokenizer=tokenizer, dim=64, shard_examples=2,
                            batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        build_store(model, Interrupting(many, 9), task, tmp_path / "s", tokenizer=tokenizer, dim=64,
                    shard_examples=2, batch_size=2)
    partial = open_store(tmp_path / "s")
    assert partial.status == "building" and 0 < partial.num_examples < 9
    done = build_store(model, many, task, tmp_path / "s", tokenizer=tokenizer, dim=64, shard_examples=2,
                       batch_size=2, resume=True)
    np.testing.assert_array_equal(done.read(), reference.read())
    assert done.examples["text"].to_pylist() == reference.examples["text"].to_pylist()


def test_dry_run_plans_without_writing(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    plan = build_store(model, REVIEWS, TASKS["label-tokens"], tmp_path / "s", tokenizer=tokenizer,
                       pef=PefSpec(kind="eps", eps_rows=4), dry_run=True, max_examples=4)
    assert (plan.num_examples, plan.rank, plan.dim, plan.num_classes) == (4, 4, 8192, 2)
    assert plan.store_bytes == 4 * 4 * 8192 * 4 and "n = " in plan.describe()
    assert not (tmp_path / "s").exists()


def test_label_names_are_recorded(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    store = build_store(model, REVIEWS[:2], TASKS["label-tokens"], tmp_path / "a", tokenizer=tokenizer, dim=64)
    assert store.manifest["pef_spec"]["label_names"] == [w.strip() for w in TASKS["label-tokens"].labels]
    model, tokenizer = load(tiny_models, "classifier", "classifier")
    store = build_store(model, REVIEWS[:2], TASKS["classifier"], tmp_path / "b", tokenizer=tokenizer, dim=64)
    assert "label_names" not in store.manifest["pef_spec"]  # LABEL_0.. says nothing
    model.config.id2label = {0: "good", 1: "bad", 2: "meh"}
    store = build_store(model, REVIEWS[:2], TASKS["classifier"], tmp_path / "c", tokenizer=tokenizer, dim=64)
    assert store.manifest["pef_spec"]["label_names"] == ["good", "bad", "meh"]


@pytest.mark.parametrize("task,message", [
    (TaskSpec(formulation="label-tokens", template="{sentence}", labels=("good", "bad")), "no field 'sentence'"),
    (TaskSpec(formulation="label-tokens", template="{text}", labels=("good", "")), "tokenizes to nothing"),
    (TaskSpec(formulation="label-tokens", template="{text}", labels=("good movie", "good plot")),
     "start with the same token"),
    (TaskSpec(formulation="label-tokens", template="{text}", labels=("good", "bad"), label_field="gold"),
     "no field 'gold'"),
])
def test_bad_tasks_fail_before_writing(tmp_path, tiny_models, task, message):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    with pytest.raises(TaskError, match=message):
        build_store(model, REVIEWS, task, tmp_path / "s", tokenizer=tokenizer)
    assert not (tmp_path / "s").exists()


def tiny_lm(tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    return model, REVIEWS, TASKS["label-tokens"], {"tokenizer": tokenizer}


def linear(classes):
    def make(tiny_models):
        return torch.nn.Linear(3, classes).double(), [{"input": torch.zeros(3)}], None, {"num_classes": classes}
    return make


@pytest.mark.parametrize("make,arguments,error,message", [
    (tiny_lm, {"include": ("nothing.*",)}, InvalidArgumentError, "no parameter is selected"),
    (tiny_lm, {"projection": "gaussian"}, InvalidArgumentError, "--projection must be ssp-v1 or none"),
    (tiny_lm, {"tokenizer": None, "num_classes": 2}, TaskError, "classifier formulation only"),
    (linear(5000), {}, InvalidArgumentError, "use --eps"),
    (linear(3), {"num_classes": None}, InvalidArgumentError, "give num_classes"),
    (linear(3), {"tokenizer": object()}, InvalidArgumentError, "a task is needed with a tokenizer"),
], ids=["no-parameter", "projection", "text-task-without-tokenizer", "exact-too-many-classes", "no-num-classes",
        "tokenizer-without-task"])
def test_bad_build_arguments_fail_before_writing(tmp_path, tiny_models, make, arguments, error, message):
    model, examples, task, defaults = make(tiny_models)
    with pytest.raises(error, match=message):
        build_store(model, examples, task, tmp_path / "s", **{**defaults, **arguments})
    assert not (tmp_path / "s").exists()
