"""Loading (ops/pef/loading.py): a saved tiny model in the asked dtype, and the model identity
that stores record."""

import torch

from npeff.ops.pef.loading import load_model_and_tokenizer, model_identity


def test_loads_a_causal_lm_or_a_classifier_in_the_asked_dtype(tiny_models):
    model, tokenizer = load_model_and_tokenizer(tiny_models["gpt2"], "label-tokens", dtype="float64")
    assert type(model).__name__ == "GPT2LMHeadModel" and next(model.parameters()).dtype == torch.float64
    assert tokenizer.pad_token_id == 0
    model, _ = load_model_and_tokenizer(tiny_models["classifier"], "classifier")
    assert type(model).__name__ == "GPT2ForSequenceClassification"
    assert next(model.parameters()).dtype == torch.float32


def test_model_identity_hashes_the_configuration(tiny_models):
    first, _ = load_model_and_tokenizer(tiny_models["gpt2"], "next-token")
    again, _ = load_model_and_tokenizer(tiny_models["gpt2"], "next-token")
    other, _ = load_model_and_tokenizer(tiny_models["llama"], "next-token")
    identity = model_identity(first, "tiny-gpt2")
    assert identity.name == "tiny-gpt2" and len(identity.config_hash) == 16
    assert model_identity(again, None) == model_identity(first, None)
    assert model_identity(first, None).name == "GPT2LMHeadModel"
    assert model_identity(other, None).config_hash != identity.config_hash
    mlp = torch.nn.Sequential(torch.nn.Linear(2, 3))
    assert model_identity(mlp, None).name == "Sequential" and model_identity(mlp, None).revision is None
