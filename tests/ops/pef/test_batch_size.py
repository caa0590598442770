"""The automatic batch size of a build (ops/pef/batch_size.py): the measured bytes per example
against a hand count, the choice against the batch memory, and builds that use it."""

import logging

import numpy as np
import pytest
import torch

from npeff.errors import InvalidArgumentError
from npeff.ops import PefSpec, build_store
from npeff.ops.pef import batch_size as batch_size_module
from npeff.ops.pef.batch import BatchSetup
from npeff.ops.pef.batch_size import MAX_BATCH_SIZE, choose_batch_size, example_bytes
from npeff.ops.pef.formulations import TensorClassifier
from npeff.ops.pef.per_example import select_parameters
from tests import tolerances
from tests.fixtures import REVIEWS
from tests.ops.pef.references import TASKS, load

DIM = 16


def linear_setup(pef=PefSpec(), hidden=64):
    """A two-layer linear classifier in float64 (5 -> hidden -> 3) and its build setup."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, hidden), torch.nn.Linear(hidden, 3)).double()
    included, layout = select_parameters(model)
    setup = BatchSetup(formulation=TensorClassifier(model, 3, "cpu"), task=None, included=included, layout=layout,
                       pef=pef, eps=None, projection={"kind": "ssp-v1", "seed": 0}, dim=DIM,
                       dtype=torch.float64)
    examples = [{"input": torch.randn(5, dtype=torch.float64), "label": i % 3} for i in range(40)]
    return model, setup, examples


def test_example_bytes_match_a_hand_count():
    """For ``x -> Linear(5, 64) -> Linear(64, 3) -> log_softmax`` (float64, one example) the graph
    keeps ``x`` (for the first weight's gradient), the hidden ``h`` (for the second's) and the
    log-probabilities (for log_softmax's backward), the parameters aside; the recorded inputs are
    ``x`` and ``h`` again. Two exact rows (C - 1 of 3 classes) also hold the layers' output
    gradients (``h`` and the logits) once; plus three copies of the projected rows."""
    _, setup, examples = linear_setup()
    graph = 8 * (5 + 64 + 3)
    assert setup.rows == 2
    assert example_bytes(setup, examples[0]) == graph + 8 * (64 + 3) + 3 * 2 * DIM * 4
    _, gradient, _ = linear_setup(pef=PefSpec(kind="gradient"))
    assert gradient.rows == 1
    assert example_bytes(gradient, examples[0]) == graph + 3 * 1 * DIM * 4  # one row: nothing held


def test_batch_size_is_the_batch_memory_over_the_bytes_per_example():
    _, setup, examples = linear_setup()
    per_example = example_bytes(setup, examples[0])
    room = 10 * per_example
    choice = choose_batch_size(setup, examples, 0, len(examples), room + 2 * setup.memory_budget)
    assert (choice.batch_size, choice.example_bytes) == (10, per_example)
    assert "batch size 10" in choice.describe()
    assert choose_batch_size(setup, examples, 0, len(examples), room - 1 + 2 * setup.memory_budget).batch_size == 9
    assert choose_batch_size(setup, examples, 0, len(examples), 0).batch_size == 1  # never below one
    assert choose_batch_size(setup, examples, 0, 7, 1 << 40).batch_size == 7  # never beyond the examples
    many = [examples[i % len(examples)] for i in range(500)]
    assert choose_batch_size(setup, many, 0, len(many), 1 << 40).batch_size == MAX_BATCH_SIZE


def test_the_probe_is_the_longest_text_of_the_first_examples(tiny_models, monkeypatch):
    """Batches are padded to their longest example, so the longest text of the first examples of
    the range is measured; a longer text needs more bytes (a smaller batch)."""
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    from npeff.ops.pef.build import _formulation

    included, layout = select_parameters(model)
    setup = BatchSetup(formulation=_formulation(model, REVIEWS, task, tokenizer, None, "cpu"), task=task,
                       included=included, layout=layout, pef=PefSpec(), eps=None,
                       projection={"kind": "ssp-v1", "seed": 0}, dim=DIM, dtype=torch.float64)
    short, long = {"text": "good", "label": 0}, {"text": " ".join(["a fine and moving film"] * 6), "label": 1}
    assert example_bytes(setup, long) > example_bytes(setup, short)
    probed = []
    measure = batch_size_module.example_bytes
    monkeypatch.setattr(batch_size_module, "example_bytes", lambda s, e: probed.append(e) or measure(s, e))
    data = [short, long, short]
    choose_batch_size(setup, data, 0, 3, 1 << 30)
    choose_batch_size(setup, data, 2, 3, 1 << 30)
    assert probed == [long, short]


def test_automatic_build_logs_its_batch_size_and_gives_the_same_pefs(tmp_path, tiny_models, caplog):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    with caplog.at_level(logging.INFO, logger="npeff"):
        automatic = build_store(model, REVIEWS, task, tmp_path / "a", tokenizer=tokenizer, dim=64,
                                batch_memory=(128 << 20) + (250 << 10))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("batch size")]
    assert len(lines) == 1 and "within a batch memory of 128 MiB" in lines[0]
    chosen = int(lines[0].split()[2])
    assert 1 <= chosen < len(REVIEWS)  # 250 KiB above the two 64 MiB blocks: a few
    explicit = build_store(model, REVIEWS, task, tmp_path / "e", tokenizer=tokenizer, dim=64, batch_size=1)
    np.testing.assert_allclose(automatic.read(), explicit.read(), **tolerances.FLOAT32_VS_FLOAT64)


def test_batch_size_and_batch_memory_are_refused_together_or_malformed(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    with pytest.raises(InvalidArgumentError, match="give it or --batch-size, not both"):
        build_store(model, REVIEWS, task, tmp_path / "s", tokenizer=tokenizer, batch_size=4, batch_memory="1GB")
    with pytest.raises(InvalidArgumentError, match="must look like 2GB"):
        build_store(model, REVIEWS, task, tmp_path / "s", tokenizer=tokenizer, batch_memory="plenty")
    assert not (tmp_path / "s").exists()
