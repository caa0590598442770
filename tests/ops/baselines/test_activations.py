"""Activation stores: the residual stream at the final token equals a forward hook read by hand."""

import numpy as np
import pytest
import torch

from npeff.errors import InvalidArgumentError
from npeff.ops.baselines.activations import build_activation_store, resolve_layer, transformer_blocks
from npeff.ops.pef import TaskSpec, load_model_and_tokenizer
from tests import tolerances
from tests.fixtures import REVIEWS

TASK = TaskSpec.from_dict({"formulation": "label-tokens", "template": "review : {text} sentiment :",
                           "labels": ["good", "bad"], "label_field": "label"})


@pytest.mark.parametrize("name, blocks", [("gpt2", "transformer.h"), ("llama", "model.layers")])
@pytest.mark.parametrize("layer", [None, 0, -2])
def test_final_token_activations_equal_a_hook_by_hand(tiny_models, tmp_path, name, blocks, layer):
    model, tokenizer = load_model_and_tokenizer(tiny_models[name], "label-tokens")
    store = build_activation_store(model, REVIEWS, TASK, tmp_path / "acts", tokenizer=tokenizer, layer=layer,
                                   batch_size=2)
    block_list = model.get_submodule(blocks)
    assert transformer_blocks(model) is block_list
    index = resolve_layer(model, layer)
    assert store.manifest["pef_spec"]["activation"]["layer"] == index == (1 if layer is None else layer % 2)
    assert store.config.kind == "activation" and store.dim == 16 and store.rank == 1
    acts = store.read()[:, 0, :]
    norms = store.examples.column("pef_norm").to_numpy()
    for i, example in enumerate(REVIEWS):
        kept = {}
        handle = block_list[index].register_forward_hook(lambda m, a, out: kept.update(h=out[0] if isinstance(out, tuple) else out))
        ids = tokenizer(TASK.render(example), return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -1]
        handle.remove()
        label_ids = [tokenizer.convert_tokens_to_ids(word) for word in ("good", "bad")]
        assert store.examples.column("prediction")[i].as_py() == int(logits[label_ids].argmax())
        expected = kept["h"][0, -1].double().numpy()
        np.testing.assert_allclose(norms[i], np.linalg.norm(expected), **tolerances.FLOAT32_VS_FLOAT64)
        np.testing.assert_allclose(acts[i], expected / np.linalg.norm(expected), **tolerances.FLOAT32_VS_FLOAT64)
    assert store.manifest["pef_spec"]["normalization"] == "unit-l2"


def test_bad_layers_and_formulations(tiny_models, tmp_path):
    model, tokenizer = load_model_and_tokenizer(tiny_models["gpt2"], "label-tokens")
    for layer in (2, -3):
        with pytest.raises(InvalidArgumentError, match=r"--layer must be a block index in \[-2, 1\]"):
            build_activation_store(model, REVIEWS, TASK, tmp_path / "x", tokenizer=tokenizer, layer=layer)
    assert not (tmp_path / "x").exists()
    suffixes = TaskSpec.from_dict({"formulation": "suffixes", "template": "review : {text}",
                                   "labels": [" good", " bad"], "label_field": "label"})
    with pytest.raises(InvalidArgumentError, match="formulations"):
        build_activation_store(model, REVIEWS, suffixes, tmp_path / "y", tokenizer=tokenizer)
