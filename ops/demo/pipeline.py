"""``npeff demo``: the main job end to end on a planted task, with no network.

A small labelled sentiment dataset is generated in code from a handful of *strategies*, each a way
the label follows from the words: a sentiment word, a negation that flips it, a contrast where the
clause after "but" decides, and a topic rule for sentences with no sentiment word. Intensifiers and
topic words are distractors sprinkled over all of them. A tiny GPT-2 classifier is trained on it,
then the toolkit does what a user would do with a real model: build the PEF store, decompose it,
write the report, and measure how well components align with the planted strategies (the fraction
of analysed components whose top examples mostly share one strategy, against the fraction expected
by chance).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from npeff.errors import InvalidArgumentError, StoreExistsError

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
MARKER = "npeff-demo.json"


def _adjective(rng: random.Random, positive: bool) -> str:
    word = rng.choice(POSITIVE if positive else NEGATIVE)
    return f"{rng.choice(INTENSIFIERS)} {word}" if rng.random() < 0.4 else word


def make_example(rng: random.Random, strategy: str) -> dict:
    """One sentence made with ``strategy``; its label follows from the strategy's rule."""
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
    words = {"the", "was", "not", "but"} | set(POSITIVE + NEGATIVE + INTENSIFIERS + TOPICS + NEUTRAL)
    return list(SPECIAL) + sorted(words)


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = vocabulary()
    tokenizer = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>")


def make_model(seed: int):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(vocabulary()), n_positions=16, n_embd=32, n_layer=2, n_head=4,
                        num_labels=2, pad_token_id=0, bos_token_id=None, eos_token_id=None,
                        id2label=dict(enumerate(LABEL_NAMES)), label2id={n: i for i, n in enumerate(LABEL_NAMES)},
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2ForSequenceClassification(config)


def train(model, tokenizer, examples: list[dict], *, epochs: int, seed: int, batch_size: int = 64,
          lr: float = 3e-3, progress: bool = False) -> list[float]:
    """Plain Adam on cross-entropy; returns the mean loss of each epoch."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    encoded = tokenizer([e["text"] for e in examples], padding=True, return_tensors="pt")
    labels = torch.tensor([e["label"] for e in examples])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    history = []
    steps = epochs * ((len(examples) + batch_size - 1) // batch_size)
    bar = tqdm(total=steps, desc="train", unit="step", disable=not progress, dynamic_ncols=True)
    for _ in range(epochs):
        order = torch.randperm(len(examples), generator=generator)
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
    model.eval()
    return history


@torch.no_grad()
def accuracy(model, tokenizer, examples: list[dict]) -> float:
    encoded = tokenizer([e["text"] for e in examples], padding=True, return_tensors="pt")
    logits = model(**encoded).logits
    return float((logits.argmax(dim=1) == torch.tensor([e["label"] for e in examples])).float().mean())


def alignment(W: np.ndarray, strategies: list[str], *, top: int = 16, threshold: float = 0.75,
              seed: int = 0) -> dict:
    """How well components match the planted strategies.

    For each component with at least ``top`` non-zero coefficients, the purity is the fraction of
    its top examples that share the most common strategy; a component is *aligned* when its purity
    reaches ``threshold``. Chance: the same figures for random sets of ``top`` examples.
    """
    from npeff.ops.analysis import nonzero_counts, top_indices

    strategies = np.asarray(strategies)
    counts = nonzero_counts(W)
    components = []
    for c, idx in top_indices(W, min(top, W.shape[0])).items():
        if counts[c] < top:
            continue
        names, hits = np.unique(strategies[idx], return_counts=True)
        components.append({"component": c, "strategy": str(names[hits.argmax()]),
                           "purity": float(hits.max() / len(idx))})
    rng = np.random.default_rng(seed)
    chance = []
    for _ in range(2000):
        _, hits = np.unique(rng.choice(strategies, size=top, replace=False), return_counts=True)
        chance.append(hits.max() / top)
    chance = np.asarray(chance)
    purities = np.asarray([c["purity"] for c in components])
    return {
        "threshold": threshold, "top": top, "n_analysed": len(components),
        "aligned_fraction": float((purities >= threshold).mean()) if len(components) else 0.0,
        "mean_purity": float(purities.mean()) if len(components) else 0.0,
        "chance_aligned_fraction": float((chance >= threshold).mean()),
        "chance_mean_purity": float(chance.mean()),
        "strategies_found": sorted({c["strategy"] for c in components if c["purity"] >= threshold}),
        "components": components,
    }


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; the defaults take a few minutes on two cores."""

    train_examples: int = 4000
    epochs: int = 2
    train_lr: float = 1e-3
    pef_examples: int = 1600
    dim: int = 4096
    n_components: int = 24
    warmup_steps: int = 300
    joint_steps: int = 1700
    warmup_lr: float = 1e-4
    joint_lr: float = 3e-4
    seed: int = 0


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise StoreExistsError(f"{out} exists and is a file")
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise StoreExistsError(f"{out} exists, is not empty and is not an npeff demo folder; refusing")
        if not overwrite:
            raise StoreExistsError(f"a demo already exists in {out}; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def run_demo(out: str | Path, settings: DemoSettings = DemoSettings(), *, overwrite: bool = False,
             progress: bool = False, log: Callable[[str], None] = lambda message: None) -> dict:
    """Run the whole demo into ``out``; returns the summary also written to ``out/summary.json``."""
    from npeff.ops.analysis import tunings
    from npeff.ops.pef import build_store, load_examples, load_model_and_tokenizer
    from npeff.ops.decomposition import DecomposeConfig, decompose
    from npeff.ops.report import write_report
    from npeff.ops.pef.tasks import TaskSpec

    import datasets
    import transformers

    datasets.disable_progress_bars()  # the demo shows its own progress; the libraries' bars are noise here
    transformers.utils.logging.disable_progress_bar()
    out = Path(out)
    _prepare(out, overwrite)
    (out / MARKER).write_text(json.dumps({"settings": asdict(settings)}, indent=1) + "\n")
    timings = {}
    started = time.perf_counter()

    log(f"1/5 making the planted dataset ({settings.train_examples} training and "
        f"{settings.pef_examples} analysis sentences, strategies: {', '.join(STRATEGIES)})")
    train_rows = make_dataset(settings.train_examples, settings.seed)
    analysis_rows = make_dataset(settings.pef_examples, settings.seed + 1)
    _write_jsonl(out / "train.jsonl", train_rows)
    _write_jsonl(out / "data.jsonl", analysis_rows)
    (out / "task.yaml").write_text("formulation: classifier\ntemplate: \"{text}\"\nlabel_field: label\n"
                                   "max_length: 16\n")

    log(f"2/5 training a tiny GPT-2 classifier ({settings.epochs} epochs)")
    tokenizer = make_tokenizer()
    model = make_model(settings.seed)
    losses = train(model, tokenizer, train_rows, epochs=settings.epochs, seed=settings.seed, lr=settings.train_lr,
                   progress=progress)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    train_accuracy = accuracy(model, tokenizer, train_rows)
    log(f"    training loss {losses[0]:.3f} -> {losses[-1]:.3f}; accuracy {train_accuracy:.1%} (train)")
    timings["train_s"] = time.perf_counter() - started

    log(f"3/5 building the PEF store (exact PEFs, projected to d={settings.dim})")
    mark = time.perf_counter()
    task = TaskSpec.from_yaml(out / "task.yaml")
    examples = load_examples(str(out / "data.jsonl"))
    network, loaded_tokenizer = load_model_and_tokenizer(str(out / "model"), task.formulation)
    store = build_store(network, examples, task, out / "store", tokenizer=loaded_tokenizer, dim=settings.dim,
                        seed=settings.seed, batch_size=32, progress=progress, model_name="npeff-demo-gpt2",
                        command=f"npeff build {out / 'model'} --data {out / 'data.jsonl'} --task "
                                f"{out / 'task.yaml'} --out {out / 'store'} --dim {settings.dim}")
    timings["build_s"] = time.perf_counter() - mark
    table = store.examples  # the build records each example's label and the model's prediction
    analysis_accuracy = float(np.mean(np.asarray(table.column("prediction").to_pylist())
                                      == np.asarray(table.column("label").to_pylist())))
    log(f"    accuracy on the analysed sentences: {analysis_accuracy:.1%}")

    log(f"4/5 decomposing into {settings.n_components} components "
        f"({settings.warmup_steps} warm-up + {settings.joint_steps} joint steps)")
    mark = time.perf_counter()
    config = DecomposeConfig(n_components=settings.n_components, warmup_steps=settings.warmup_steps,
                             joint_steps=settings.joint_steps, warmup_lr=settings.warmup_lr,
                             joint_lr=settings.joint_lr, seed=settings.seed)
    decomposition = decompose(store, config=config, out=out / "decomposition", progress=progress,
                              command=f"npeff decompose {out / 'store'} --out {out / 'decomposition'} "
                                      f"-C {settings.n_components}")
    timings["decompose_s"] = time.perf_counter() - mark

    log("5/5 writing the report")
    report = write_report(decomposition, store, out=out / "report.html")
    tuning = tunings(decomposition, store).summary()
    aligned = alignment(decomposition.W, [row["strategy"] for row in analysis_rows])
    timings["total_s"] = time.perf_counter() - started
    summary = {
        "out": str(out), "report": str(report), "store": str(store.path), "decomposition": str(decomposition.path),
        "settings": asdict(settings), "train_losses": losses, "train_accuracy": train_accuracy,
        "analysis_accuracy": analysis_accuracy, "decomposition_losses": [float(decomposition.losses[0]),
                                                                        float(decomposition.losses[-1])],
        "tunings": tuning, "alignment": aligned, "timings": timings,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


__all__ = ["DemoSettings", "STRATEGIES", "alignment", "make_dataset", "make_example", "run_demo"]
