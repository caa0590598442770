"""KL divergences of perturbed predictions, against a naive per-example loop in float64."""

import math

import pytest
import torch

from npeff.ops.perturb.evaluate import kl_divergence, predictive_log_probs
from tests import tolerances


def test_kl_matches_a_naive_loop():
    gen = torch.Generator().manual_seed(3)
    log_p = torch.log_softmax(torch.randn(6, 5, generator=gen, dtype=torch.float64), dim=1)
    log_q = torch.log_softmax(torch.randn(6, 5, generator=gen, dtype=torch.float64), dim=1)
    naive = [sum(math.exp(a) * (a - b) for a, b in zip(p.tolist(), q.tolist())) for p, q in zip(log_p, log_q)]
    torch.testing.assert_close(kl_divergence(log_p, log_q), torch.tensor(naive, dtype=torch.float64),
                               **tolerances.FLOAT64_REGROUPED)
    assert torch.equal(kl_divergence(log_p, log_p), torch.zeros(6, dtype=torch.float64))


def test_zero_probability_classes_contribute_nothing():
    log_p = torch.tensor([[0.0, -math.inf]], dtype=torch.float64)
    log_q = torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    assert float(kl_divergence(log_p, log_q)) == pytest.approx(math.log(2.0), rel=1e-15)


class Doubling:
    """A stand-in formulation: log-softmax of [len(text), 2 * len(text)]; records its batches."""

    def __init__(self):
        self.batches = []

    def log_probs(self, texts):
        self.batches.append(len(texts))
        logits = torch.tensor([[len(t), 2.0 * len(t)] for t in texts], dtype=torch.float32)
        return torch.log_softmax(logits, dim=1), None


def test_log_probs_in_batches():
    formulation = Doubling()
    texts = ["a", "bb", "ccc", "dddd", "eeeee"]
    out = predictive_log_probs(formulation, texts, batch_size=2)
    assert formulation.batches == [2, 2, 1] and out.dtype == torch.float64 and out.shape == (5, 2)
    torch.testing.assert_close(out[2], torch.log_softmax(torch.tensor([3.0, 6.0]), dim=0).double())
