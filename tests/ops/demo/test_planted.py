"""The planted task: each strategy's labelling rule, the dataset's balance and seeding, the vocabulary."""

import random

import numpy as np
import pytest

from npeff.errors import InvalidArgumentError
from npeff.ops.demo.planted import (NEGATIVE, POSITIVE, STRATEGIES, TOPICS_NEGATIVE, TOPICS_POSITIVE, make_dataset,
                                    make_example, make_tokenizer)


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
