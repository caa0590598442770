"""Building from a GGUF file (``load_model_and_tokenizer(..., gguf_file=...)``, ``build_store(...,
gguf_file=...)``, ``npeff build --gguf-file``) end to end, offline.

A tiny seeded Llama and a llama-style (SentencePiece BPE) tokenizer are written twice: as a GGUF file
with the ``gguf`` package, in float32, under llama.cpp's tensor names, metadata keys and q/k row
permutation, and with ``save_pretrained`` (safetensors and ``tokenizer.json``). Loaded back, the two
must be the same model with the same tokenizer, so the PEFs built from one must be those built from
the other, and only the GGUF build's manifest names the GGUF file.
"""

import json

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from npeff.ops import build_store  # noqa: E402
from npeff.ops.pef.loading import load_model_and_tokenizer  # noqa: E402
from npeff.store import open_store  # noqa: E402
from tests import tolerances  # noqa: E402
from tests.fixtures import REVIEWS  # noqa: E402
from tests.ops.pef.references import TASKS, TEMPLATE  # noqa: E402

GGUF_NAME = "tiny-llama-f32.gguf"
SPECIALS = ["<unk>", "<s>", "</s>"]  # ids 0, 1, 2: unknown, BOS, EOS (SentencePiece's layout)
#: every word of the template, the reviews and the labels (each becomes one token)
WORDS = sorted({*TEMPLATE.replace("{text}", "").split(), *" ".join(r["text"] for r in REVIEWS).split(),
                *TASKS["label-tokens"].labels})
#: the tiny Llama; GGUF metadata holds float32, so the epsilon is one that float32 holds exactly (1e-6
#: would come back as 9.99999997e-07, another model)
LLAMA = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=2.0 ** -20, rope_theta=10000.0,
             initializer_range=0.2, tie_word_embeddings=False)


def sentencepiece_vocabulary():
    """``(tokens, merges)`` of a SentencePiece-style BPE in which every word of the task and the data is
    one token ``"▁word"``: the single characters, then each word grown one character at a time from
    ``"▁"``, every prefix a token and every step a merge (so BPE can only ever join a word's pieces
    left to right, never across words)."""
    characters = sorted({"▁", *"".join(WORDS)})
    tokens, merges = SPECIALS + characters, []
    for word in WORDS:
        piece = "▁"
        for character in word:
            if piece + character not in tokens:
                tokens.append(piece + character)
                merges.append(f"{piece} {character}")
            piece += character
    return tokens, merges


def tiny_llama_and_tokenizer():
    """A seeded Llama (norm weights away from 1, so that a swapped or misnamed norm shows) and its
    tokenizer, built as transformers builds a llama tokenizer from a vocabulary and merges, adding BOS
    as llama.cpp does for a SentencePiece vocabulary."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    tokens, merges = sentencepiece_vocabulary()
    tokenizer = LlamaTokenizer(vocab={t: i for i, t in enumerate(tokens)},
                               merges=[tuple(m.split(" ")) for m in merges], add_bos_token=True)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokens), bos_token_id=1, eos_token_id=2, **LLAMA)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1 + 0.5 * torch.randn_like(param))
    return model, tokenizer, tokens, merges


def llama_cpp_permute(weight, heads):
    """llama.cpp's reordering of the rows of q/k (``convert_hf_to_gguf.py``: its rotary embedding pairs
    neighbouring rows, transformers' the two halves of a head); transformers undoes it on loading."""
    return (weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def gguf_tensors(model):
    """``{llama.cpp tensor name: float32 array}`` of ``model``, q and k permuted as llama.cpp stores them."""
    config = model.config
    state = {name: p.detach().numpy().astype(np.float32) for name, p in model.state_dict().items()}
    tensors = {"token_embd.weight": state["model.embed_tokens.weight"],
               "output_norm.weight": state["model.norm.weight"],
               "output.weight": state["lm_head.weight"]}
    leaves = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
              "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
              "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down"}
    for layer in range(config.num_hidden_layers):
        for hf, ggml in leaves.items():
            weight = state[f"model.layers.{layer}.{hf}.weight"]
            if ggml == "attn_q":
                weight = llama_cpp_permute(weight, config.num_attention_heads)
            elif ggml == "attn_k":
                weight = llama_cpp_permute(weight, config.num_key_value_heads)
            tensors[f"blk.{layer}.{ggml}.weight"] = weight
    assert len(tensors) == len(state), "every parameter of the model is written"
    return tensors


def write_gguf(path, model, tokens, merges):
    """``model`` and its vocabulary as llama.cpp writes an unquantised (all-F32) llama GGUF."""
    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(LLAMA["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([-float(i) for i in range(len(tokens))])
    writer.add_token_types([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
                           + [gguf.TokenType.NORMAL] * (len(tokens) - len(SPECIALS)))
    writer.add_token_merges(merges)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    for name, array in gguf_tensors(model).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """``{"gguf": folder holding only GGUF_NAME, "safetensors": save_pretrained folder, "model": the
    original module}``, the same model and tokenizer in both."""
    root = tmp_path_factory.mktemp("gguf-checkpoints")
    model, tokenizer, tokens, merges = tiny_llama_and_tokenizer()
    (root / "gguf").mkdir()
    write_gguf(root / "gguf" / GGUF_NAME, model, tokens, merges)
    model.save_pretrained(root / "safetensors")
    tokenizer.save_pretrained(root / "safetensors")
    return {"gguf": str(root / "gguf"), "safetensors": str(root / "safetensors"), "model": model}


def test_gguf_file_loads_back_as_the_original_model(checkpoints):
    """A check of the file itself, through transformers alone: every weight (q and k included, whose
    llama.cpp permutation transformers reverses) and the configuration come back, so the logits do."""
    from transformers import AutoModelForCausalLM

    original = checkpoints["model"]
    loaded = AutoModelForCausalLM.from_pretrained(checkpoints["gguf"], gguf_file=GGUF_NAME).eval()
    expected, actual = original.state_dict(), loaded.state_dict()
    assert sorted(actual) == sorted(expected)
    for name, tensor in expected.items():  # float32 in the file, so exactly
        torch.testing.assert_close(actual[name], tensor, rtol=0, atol=0, msg=name)
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "rms_norm_eps", "vocab_size", "tie_word_embeddings", "rope_parameters",
                "max_position_embeddings", "bos_token_id", "eos_token_id"):
        assert getattr(loaded.config, key) == getattr(original.config, key), key
    ids = torch.tensor([[1, 5, 9, 14, 20, 3]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, original(input_ids=ids).logits)


def test_gguf_tokenizer_matches_the_saved_one(checkpoints):
    """npeff's loader rebuilds the tokenizer from the file's ``tokenizer.ggml.*`` metadata alone; it
    tokenizes every rendered example and every label as the saved ``tokenizer.json`` does, each word
    one token (a label word must be one token for the label-tokens formulation)."""
    task = TASKS["label-tokens"]
    _, from_gguf = load_model_and_tokenizer(checkpoints["gguf"], task.formulation, gguf_file=GGUF_NAME)
    _, saved = load_model_and_tokenizer(checkpoints["safetensors"], task.formulation)
    for text in [task.render(example) for example in REVIEWS]:
        ids = from_gguf(text)["input_ids"]
        assert ids == saved(text)["input_ids"]
        assert ids[0] == 1 and len(ids) == 1 + len(text.split()), "BOS, then one token per word"
    for label in task.labels:
        assert from_gguf(label, add_special_tokens=False)["input_ids"] == \
            saved(label, add_special_tokens=False)["input_ids"]
        assert len(from_gguf(label, add_special_tokens=False)["input_ids"]) == 1
    assert (from_gguf.bos_token, from_gguf.eos_token, from_gguf.unk_token) == ("<s>", "</s>", "<unk>")


def test_pefs_built_from_gguf_equal_those_from_safetensors(tmp_path, checkpoints):
    """The real check: a store built from the GGUF checkpoint holds the PEFs (and predictions and
    class probabilities) of the store built from the safetensors one, and its manifest records the
    GGUF file it was loaded from, which the other's does not."""
    task = TASKS["label-tokens"]
    stores = {}
    for kind, gguf_file in (("gguf", GGUF_NAME), ("safetensors", None)):
        model, tokenizer = load_model_and_tokenizer(checkpoints[kind], task.formulation, dtype="float64",
                                                    gguf_file=gguf_file)
        stores[kind] = build_store(model, REVIEWS, task, tmp_path / kind, tokenizer=tokenizer, dim=64,
                                   batch_size=2, model_name=checkpoints[kind], gguf_file=gguf_file)
    from_gguf, from_safetensors = stores["gguf"], stores["safetensors"]
    assert from_gguf.num_examples == len(REVIEWS) and from_gguf.rank == from_safetensors.rank
    rows = from_gguf.read()
    assert np.isfinite(rows).all() and np.abs(rows).max() > 0
    np.testing.assert_allclose(rows, from_safetensors.read(), **tolerances.FLOAT32_STORED_ROWS)
    for column in ("text", "prediction"):
        assert from_gguf.examples[column].to_pylist() == from_safetensors.examples[column].to_pylist()
    np.testing.assert_allclose(np.array(from_gguf.examples["probs"].to_pylist()),
                               np.array(from_safetensors.examples["probs"].to_pylist()),
                               **tolerances.FLOAT32_STORED_PROBS)
    identity = open_store(from_gguf.path).manifest["model"]
    assert identity["gguf_file"] == GGUF_NAME and identity["name"] == checkpoints["gguf"]
    assert "gguf_file" not in open_store(from_safetensors.path).manifest["model"]


def test_build_command_with_gguf_file_records_it_and_matches_safetensors(tmp_path, checkpoints):
    """``npeff build FOLDER --gguf-file NAME`` loads the GGUF in FOLDER and writes the PEFs that
    ``npeff build`` of the safetensors folder writes, recording the file in the manifest."""
    from click.testing import CliRunner

    from npeff.cli.main import cli

    (tmp_path / "task.yaml").write_text(json.dumps(TASKS["label-tokens"].to_dict()))  # JSON is YAML
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in REVIEWS))
    common = ["--data", tmp_path / "data.jsonl", "--task", tmp_path / "task.yaml", "--dim", 64, "--eps", 2]
    runs = {"gguf": [checkpoints["gguf"], "--gguf-file", GGUF_NAME], "safetensors": [checkpoints["safetensors"]]}
    for kind, model in runs.items():
        result = CliRunner().invoke(cli, ["build", *map(str, model + common + ["--out", tmp_path / kind])])
        assert result.exit_code == 0, result.output
    from_gguf, from_safetensors = open_store(tmp_path / "gguf"), open_store(tmp_path / "safetensors")
    assert (from_gguf.num_examples, from_gguf.rank, from_gguf.dim) == (len(REVIEWS), 2, 64)
    np.testing.assert_allclose(from_gguf.read(), from_safetensors.read(), **tolerances.FLOAT32_STORED_ROWS)
    assert from_gguf.manifest["model"]["gguf_file"] == GGUF_NAME
    assert from_gguf.manifest["model"]["name"] == checkpoints["gguf"]
    assert "--gguf-file" in from_gguf.manifest["provenance"]["command"]
    assert "gguf_file" not in from_safetensors.manifest["model"]


def test_activation_store_from_gguf_records_the_file_and_matches_safetensors(tmp_path, checkpoints):
    """``npeff build FOLDER --gguf-file NAME --activations``: the baseline's activation store also
    names the GGUF file it was read from, and holds the activations of the safetensors model."""
    from click.testing import CliRunner

    from npeff.cli.main import cli

    (tmp_path / "task.yaml").write_text(json.dumps(TASKS["label-tokens"].to_dict()))
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in REVIEWS))
    common = ["--data", tmp_path / "data.jsonl", "--task", tmp_path / "task.yaml", "--activations"]
    runs = {"gguf": [checkpoints["gguf"], "--gguf-file", GGUF_NAME], "safetensors": [checkpoints["safetensors"]]}
    for kind, model in runs.items():
        result = CliRunner().invoke(cli, ["build", *map(str, model + common + ["--out", tmp_path / kind])])
        assert result.exit_code == 0, result.output
    from_gguf, from_safetensors = open_store(tmp_path / "gguf"), open_store(tmp_path / "safetensors")
    assert (from_gguf.num_examples, from_gguf.rank, from_gguf.dim) == (len(REVIEWS), 1, LLAMA["hidden_size"])
    np.testing.assert_allclose(from_gguf.read(), from_safetensors.read(), **tolerances.FLOAT32_STORED_ROWS)
    assert from_gguf.manifest["model"]["gguf_file"] == GGUF_NAME
    assert "gguf_file" not in from_safetensors.manifest["model"]
