"""Shared fixtures: tiny Hugging Face models built offline from a config and saved to local folders
(the hub is unreachable), and a headless browser for the report."""

import os

import pytest
import torch

WORDS = ["<pad>", "<unk>", "review", ":", "sentiment", "good", "bad", "movie", "the", "was", "great",
         "awful", "very", "not", "okay", "plot", "acting", "fine", "so", "and"]


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="removed")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")


def _save(model, path):
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Folders with a GPT-2-style and a Llama-style causal LM and a GPT-2 sequence classifier."""
    from transformers import (GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, LlamaConfig,
                              LlamaForCausalLM)

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    common = dict(vocab_size=len(WORDS), bos_token_id=None, eos_token_id=None, pad_token_id=0)
    gpt2 = GPT2Config(n_positions=64, n_embd=16, n_layer=2, n_head=2, **common)
    llama = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=1, max_position_embeddings=64, **common)
    classifier = GPT2Config(n_positions=64, n_embd=16, n_layer=1, n_head=2, num_labels=3, **common)
    return {
        "gpt2": _save(GPT2LMHeadModel(gpt2), root / "gpt2"),
        "llama": _save(LlamaForCausalLM(llama), root / "llama"),
        "classifier": _save(GPT2ForSequenceClassification(classifier), root / "classifier"),
    }


REVIEWS = [
    {"text": "the movie was great", "label": 0},
    {"text": "awful acting", "label": 1},
    {"text": "the plot was not good and the acting was awful", "label": 1},
    {"text": "so so", "label": 0},
    {"text": "very fine movie", "label": 0},
]


BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path():
    import shutil

    for candidate in (os.environ.get("NPEFF_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by Playwright (the system's browser: nothing is downloaded).

    Skipped when no Chromium is installed, unless ``NPEFF_REQUIRE_BROWSER=1`` (CI sets it), where the
    absence is an error.
    """
    path = chromium_path()
    if path is None:
        if os.environ.get("NPEFF_REQUIRE_BROWSER") == "1":
            pytest.fail("NPEFF_REQUIRE_BROWSER=1 but no chromium is installed (apt-get install chromium)")
        pytest.skip("no chromium installed (apt-get install chromium); set NPEFF_REQUIRE_BROWSER=1 to require it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=path, args=BROWSER_FLAGS)
        yield instance
        instance.close()


CLASSIFIER_TEXTS = ["the movie was great", "awful acting", "the plot was not good", "so so", "very fine movie",
                    "great acting and a fine plot", "the movie was awful", "not bad", "good good good",
                    "the plot was okay", "very very bad", "fine"]


@pytest.fixture(scope="session")
def classifier_decomposition(tiny_models, tmp_path_factory):
    """A store of the tiny GPT-2 classifier (unprojected: A = I) and a 3-component decomposition."""
    from npeff.ops import decompose
    from npeff.ops.pef import TaskSpec, build_store, load_model_and_tokenizer

    root = tmp_path_factory.mktemp("perturb")
    model, tokenizer = load_model_and_tokenizer(tiny_models["classifier"], "classifier")
    task = TaskSpec(formulation="classifier", template="{text}")
    examples = [{"text": text} for text in CLASSIFIER_TEXTS]
    build_store(model, examples, task, root / "store", tokenizer=tokenizer, projection="none", batch_size=4,
                model_name=tiny_models["classifier"], include=("transformer.h.0.mlp.*",))
    decompose(root / "store", 3, out=root / "decomposition", warmup_steps=5, joint_steps=20, warmup_lr=1e-2,
              joint_lr=1e-2, dtype="float64")
    return root
