"""One batch (ops/pef/batch.py): per-tensor projections add up to the projection of the whole
row, and the example-table records."""

import numpy as np
import pytest
import torch

from npeff.cuda_ops import project
from npeff.ops import build_store
from npeff.ops.pef.batch import MAX_STORED_PROBS, example_records
from tests import tolerances
from tests.fixtures import REVIEWS
from tests.ops.pef.references import TASKS, load


def test_projected_rows_equal_projected_full_rows(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    full = build_store(model, REVIEWS, task, tmp_path / "full", tokenizer=tokenizer, projection="none")
    small = build_store(model, REVIEWS, task, tmp_path / "small", tokenizer=tokenizer, dim=64, seed=11,
                        backend="cpu")
    assert small.manifest["projection"]["seed"] == 11 and small.dim == 64
    full_rows = full.read() * np.sqrt(np.array(full.examples["pef_norm"]))[:, None, None]
    small_rows = small.read() * np.sqrt(np.array(small.examples["pef_norm"]))[:, None, None]
    expected = project(full_rows.reshape(-1, full.dim), d=64, seed=11, n_total=full.dim, backend="cpu")
    rtol = tolerances.FLOAT32_PROJECTION_REGROUPED["rtol"]
    np.testing.assert_allclose(small_rows.reshape(-1, 64), expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_records_of_a_text_batch():
    task = TASKS["label-tokens"]
    batch = [dict(REVIEWS[0], id="r0"), REVIEWS[1]]
    log_probs = torch.log(torch.tensor([[0.25, 0.75], [0.9, 0.1]], dtype=torch.float64))
    records = example_records(batch, [task.render(e) for e in batch], [7, 8], task, log_probs,
                              torch.tensor([2.0, 3.0]))
    assert [r["source_id"] for r in records] == ["r0", "8"]
    assert [r["label"] for r in records] == [0, 1] and [r["prediction"] for r in records] == [1, 0]
    assert records[0]["probs"] == pytest.approx([0.25, 0.75]) and records[1]["pef_norm"] == 3.0
    assert records[1]["text"] == task.render(REVIEWS[1])


def test_records_of_a_tensor_batch_with_many_classes():
    classes = MAX_STORED_PROBS + 1
    log_probs = torch.log_softmax(torch.arange(2 * classes, dtype=torch.float64).view(2, classes), dim=1)
    batch = [{"input": torch.zeros(3), "label": 4}, {"input": torch.zeros(3), "label": None}]
    records = example_records(batch, None, [0, 1], None, log_probs, torch.ones(2))
    assert [r["label"] for r in records] == [4, None] and [r["text"] for r in records] == [None, None]
    assert [r["prediction"] for r in records] == [classes - 1] * 2
    assert all(r["probs"] is None for r in records)  # too many classes to store
