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
