"""The planted task: each strategy's labelling rule, the dataset's balance and seeding, the vocabulary."""

import random

import numpy as np
import pytest
import torch

from npeff.errors import InvalidArgumentError
from npeff.ops.demo.planted import (NEGATIVE, POSITIVE, STRATEGIES, TOPICS_NEGATIVE, TOPICS_POSITIVE, make_dataset,
                                    make_example, make_model, make_tokenizer, sub_seed, train)


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


def test_an_unknown_strategy_is_refused():
    with pytest.raises(InvalidArgumentError, match="unknown strategy 'irony'"):
        make_example(random.Random(0), "irony")


def test_dataset_is_balanced_and_seeded():
    rows = make_dataset(400, 7)
    assert rows == make_dataset(400, 7) and rows != make_dataset(400, 8)
    counts = {s: sum(r["strategy"] == s for r in rows) for s in STRATEGIES}
    assert set(counts.values()) == {100}
    assert all(r["id"].startswith(r["strategy"].replace(" ", "-")) for r in rows)
    assert 0.4 < np.mean([r["label"] for r in rows]) < 0.6


def test_the_tokenizer_knows_every_word():
    tokenizer = make_tokenizer()
    ids = tokenizer([r["text"] for r in make_dataset(400, 0)])["input_ids"]
    assert tokenizer.unk_token_id not in {i for row in ids for i in row}
    assert tokenizer.pad_token_id == 0


def _weights(model):
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_initial_weights_come_from_the_seed_alone_with_gpt2_scales():
    torch.manual_seed(1)
    first = _weights(make_model(0))
    torch.manual_seed(2)  # torch's global generator (and its CPU kernels) play no part
    assert all(torch.equal(value, first[name]) for name, value in _weights(make_model(0)).items())
    assert not torch.equal(_weights(make_model(1))["transformer.wte.weight"], first["transformer.wte.weight"])
    expected = np.random.default_rng(sub_seed(0, "transformer.wte.weight")).normal(0.0, 0.02, size=(29, 32))
    assert torch.equal(first["transformer.wte.weight"], torch.from_numpy(expected).float())
    assert 0.015 < float(first["transformer.h.0.mlp.c_fc.weight"].std()) < 0.025
    assert 0.007 < float(first["transformer.h.0.mlp.c_proj.weight"].std()) < 0.013  # 0.02 / sqrt(2 n_layer)
    assert float(first["transformer.h.0.mlp.c_fc.bias"].abs().max()) == 0.0
    assert float(first["transformer.ln_f.weight"].min()) == 1.0


def test_sub_seeds_differ_by_name_and_seed():
    states = {(seed, name): sub_seed(seed, name).generate_state(2).tolist()
              for seed in (0, 1) for name in ("a", "b")}
    assert len({tuple(v) for v in states.values()}) == 4
    assert sub_seed(0, "a").generate_state(2).tolist() == states[0, "a"]


def test_training_runs_in_float64_and_hands_back_the_float32_model():
    rows = make_dataset(128, 0)
    tokenizer = make_tokenizer()
    model = make_model(0)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(module.score.weight.dtype))
    losses = train(model, tokenizer, rows, epochs=2, seed=0, lr=1e-3)
    again = make_model(0)
    assert losses == train(again, tokenizer, rows, epochs=2, seed=0, lr=1e-3) and len(losses) == 2
    assert set(seen) == {torch.float64}
    assert next(model.parameters()).dtype == torch.float32 and not model.training
    assert all(torch.equal(value, _weights(again)[name]) for name, value in _weights(model).items())
