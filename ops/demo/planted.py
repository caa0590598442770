"""The planted task of ``npeff demo``: a sentiment dataset generated from known strategies, and the
tiny GPT-2 classifier trained on it.

Each *strategy* is a way the label follows from the words: a sentiment word, a negation that flips
it, a contrast where the clause after "but" decides, and a topic rule for sentences with no
sentiment word. Intensifiers and topic words are distractors sprinkled over all of them. Everything
is made in code (word-level tokenizer included): the demo needs no network.

The same seed gives the same model on every machine it can: the initial weights come from numpy's
generator (torch's float32 normal draws differ between CPU kernels), the batch order too, and
training runs in float64 (in float32, Adam turns rounding noise in near-zero gradients into whole
steps, so the thread count or the CPU's vector width changed the trained model).
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch

from npeff.errors import InvalidArgumentError

POSITIVE = ("good", "great", "excellent", "lovely", "wonderful")
NEGATIVE = ("bad", "awful", "terrible", "boring", "poor")
INTENSIFIERS = ("very", "really", "truly", "so")
TOPICS_POSITIVE = ("food", "music")  # the topic rule: with no sentiment word, these are positive
TOPICS_NEGATIVE = ("service", "hotel")
TOPICS = TOPICS_POSITIVE + TOPICS_NEGATIVE + ("movie", "story")
NEUTRAL = ("okay", "average", "fine")
STRATEGIES = ("sentiment word", "negation", "contrast", "topic")
SPECIAL = ("<pad>", "<unk>")
LABEL_NAMES = ("negative", "positive")


def _adjective(rng: random.Random, positive: bool) -> str:
    word = rng.choice(POSITIVE if positive else NEGATIVE)
    return f"{rng.choice(INTENSIFIERS)} {word}" if rng.random() < 0.4 else word


def make_example(rng: random.Random, strategy: str) -> dict:
    """One sentence made with ``strategy``; its label follows from the strategy's rule.

    Returns:
        ``{"text": str, "label": 0 or 1, "strategy": strategy}``.
    """
    topic = rng.choice(TOPICS)
    if strategy == "sentiment word":
        label = rng.random() < 0.5
        text = f"the {topic} was {_adjective(rng, label)}"
    elif strategy == "negation":
        word_positive = rng.random() < 0.5
        label = not word_positive
        text = f"the {topic} was not {_adjective(rng, word_positive)}"
    elif strategy == "contrast":
        label = rng.random() < 0.5
        other = rng.choice([t for t in TOPICS if t != topic])
        text = f"the {topic} was {_adjective(rng, not label)} but the {other} was {_adjective(rng, label)}"
    elif strategy == "topic":
        label = rng.random() < 0.5
        topic = rng.choice(TOPICS_POSITIVE if label else TOPICS_NEGATIVE)
        text = f"the {topic} was {rng.choice(NEUTRAL)}"
    else:
        raise InvalidArgumentError(f"unknown strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    return {"text": text, "label": int(label), "strategy": strategy}


def make_dataset(count: int, seed: int) -> list[dict]:
    """``count`` examples, the strategies in turn, shuffled; each with an id naming its strategy."""
    rng = random.Random(seed)
    examples = [make_example(rng, STRATEGIES[i % len(STRATEGIES)]) for i in range(count)]
    rng.shuffle(examples)
    for i, example in enumerate(examples):
        example["id"] = f"{example['strategy'].replace(' ', '-')}-{i}"
    return examples


def vocabulary() -> list[str]:
    """Every word the planted sentences use, after the special tokens (pad is id 0)."""
    words = {"the", "was", "not", "but"} | set(POSITIVE + NEGATIVE + INTENSIFIERS + TOPICS + NEUTRAL)
    return list(SPECIAL) + sorted(words)


def make_tokenizer():
    """A word-level tokenizer over :func:`vocabulary` (whitespace split), as a transformers tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = vocabulary()
    tokenizer = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>")


def sub_seed(seed: int, name: str) -> np.random.SeedSequence:
    """A seed for ``name`` (a parameter, the batch order) derived from ``seed``: a hash of both, the same
    on every machine."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return np.random.SeedSequence(int.from_bytes(digest[:16], "little"))


def make_model(seed: int):
    """An untrained two-layer GPT-2 sequence classifier (embedding 32, 16 positions, no dropout).

    GPT-2's initialisation (weights N(0, 0.02²), residual projections N(0, 0.02² / (2 n_layer)),
    biases 0, layer norms 1 and 0), drawn in float64 by numpy from :func:`sub_seed`, then
    rounded to the model's float32.
    """
    from transformers import GPT2Config, GPT2ForSequenceClassification

    config = GPT2Config(vocab_size=len(vocabulary()), n_positions=16, n_embd=32, n_layer=2, n_head=4,
                        num_labels=2, pad_token_id=0, bos_token_id=None, eos_token_id=None,
                        id2label=dict(enumerate(LABEL_NAMES)), label2id={n: i for i, n in enumerate(LABEL_NAMES)},
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2ForSequenceClassification(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() < 2:
                continue  # biases and layer norms: constants
            std = config.initializer_range
            if name.endswith("c_proj.weight"):
                std /= (2 * config.n_layer) ** 0.5
            values = np.random.default_rng(sub_seed(seed, name)).normal(0.0, std, size=tuple(parameter.shape))
            parameter.copy_(torch.from_numpy(values))
    return model


def train(model, tokenizer, examples: list[dict], *, epochs: int, seed: int, batch_size: int = 64,
          lr: float = 3e-3, progress: bool = False, dtype: torch.dtype = torch.float64) -> list[float]:
    """Plain Adam on cross-entropy in ``dtype``; returns the mean loss of each epoch.

    The batches follow a numpy permutation of the examples each epoch, seeded from ``seed``.
    Leaves the model in eval mode, in the dtype it came in (float64 training costs nothing at this
    size and keeps the result from depending on the BLAS's reduction order).
    """
    from npeff.progress import progress_bar

    model_dtype = next(model.parameters()).dtype
    model.to(dtype)
    rng = np.random.default_rng(sub_seed(seed, "batch order"))
    encoded = tokenizer([e["text"] for e in examples], padding=True, return_tensors="pt")
    labels = torch.tensor([e["label"] for e in examples])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history = []
    steps = epochs * ((len(examples) + batch_size - 1) // batch_size)
    bar = progress_bar(total=steps, desc="train", unit="step", enabled=progress)
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(examples)))
        losses = []
        for start in range(0, len(examples), batch_size):
            idx = order[start:start + batch_size]
            out = model(input_ids=encoded["input_ids"][idx], attention_mask=encoded["attention_mask"][idx],
                        labels=labels[idx])
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            losses.append(out.loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        history.append(float(np.mean(losses)))
    bar.close()
    model.to(model_dtype)
    model.eval()
    return history


@torch.no_grad()
def accuracy(model, tokenizer, examples: list[dict]) -> float:
    """The fraction of ``examples`` the model classifies right (one batch)."""
    encoded = tokenizer([e["text"] for e in examples], padding=True, return_tensors="pt")
    logits = model(**encoded).logits
    return float((logits.argmax(dim=1) == torch.tensor([e["label"] for e in examples])).float().mean())


__all__ = ["LABEL_NAMES", "NEGATIVE", "NEUTRAL", "POSITIVE", "STRATEGIES", "TOPICS", "TOPICS_NEGATIVE",
           "TOPICS_POSITIVE", "accuracy", "make_dataset", "make_example", "make_model", "make_tokenizer",
           "sub_seed", "train", "vocabulary"]
