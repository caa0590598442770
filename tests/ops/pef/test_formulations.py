"""Formulations (ops/pef/formulations.py): a padded batch's class log-probabilities equal each
example's own unpadded forward pass; a tensor model's logits are checked."""

import numpy as np
import pytest
import torch

from npeff.ops.pef.formulations import TensorClassifier, make_formulation
from npeff.ops.pef.tasks import TaskError
from tests import tolerances
from tests.fixtures import REVIEWS
from tests.ops.pef.references import MODEL_FORMULATIONS, TASKS, load, manual_log_probs


@pytest.mark.parametrize("name,formulation", MODEL_FORMULATIONS)
def test_batched_log_probs_equal_single_example_ones(tiny_models, name, formulation):
    model, tokenizer = load(tiny_models, name, formulation)
    task = TASKS[formulation]
    with torch.no_grad():
        log_probs, owner = make_formulation(task, model, tokenizer, "cpu").log_probs(
            [task.render(e) for e in REVIEWS])
        expected = torch.stack([manual_log_probs(model, tokenizer, task, e) for e in REVIEWS])
    np.testing.assert_allclose(log_probs.numpy(), expected.numpy(), **tolerances.FLOAT64_VS_NAIVE)
    if formulation == "suffixes":  # one sequence per (example, label suffix)
        assert owner.tolist() == [b for b in range(len(REVIEWS)) for _ in task.labels]
    else:
        assert owner is None


def test_tensor_classifier_checks_the_logits_shape():
    model = torch.nn.Linear(4, 3).double()
    with pytest.raises(TaskError, match=r"logits \[B, 5\], got \[2, 3\]"):
        TensorClassifier(model, 5, "cpu").log_probs(torch.zeros(2, 4, dtype=torch.float64))


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causal_lm_head_runs_at_the_distinct_last_positions_only(tiny_models, name):
    """Label-tokens and next-token read one position per example: the LM head is computed at the
    distinct last positions of the batch (``logits_to_keep``), not at every position, and the
    log-probabilities are those of the full head (the single-example references above)."""
    model, tokenizer = load(tiny_models, name, "label-tokens")
    task = TASKS["label-tokens"]
    texts = [task.render(e) for e in REVIEWS]
    lengths = {len(tokenizer(t)["input_ids"]) for t in texts}
    assert 1 < len(lengths) < max(lengths)
    widths = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, i, o: widths.append(o.shape[1]))
    try:
        with torch.no_grad():
            log_probs, _ = make_formulation(task, model, tokenizer, "cpu").log_probs(texts)
    finally:
        handle.remove()
    assert widths == [len(lengths)]
    with torch.no_grad():
        expected = torch.stack([manual_log_probs(model, tokenizer, task, e) for e in REVIEWS])
    np.testing.assert_allclose(log_probs.numpy(), expected.numpy(), **tolerances.FLOAT64_VS_NAIVE)


def test_a_model_that_ignores_logits_to_keep_still_reads_each_last_token(tiny_models):
    """A model whose forward takes ``logits_to_keep`` but returns every position is read as before."""
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]

    class KeepsEverything(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids=None, attention_mask=None, logits_to_keep=0):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    with torch.no_grad():
        log_probs, _ = make_formulation(task, KeepsEverything(model), tokenizer, "cpu").log_probs(
            [task.render(e) for e in REVIEWS])
        expected = torch.stack([manual_log_probs(model, tokenizer, task, e) for e in REVIEWS])
    np.testing.assert_allclose(log_probs.numpy(), expected.numpy(), **tolerances.FLOAT64_VS_NAIVE)
