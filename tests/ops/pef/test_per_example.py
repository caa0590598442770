"""Per-example gradients (ops/pef/per_example.py) against brute-force float64 Fishers: every
formulation, any torch module, the default parameter selection, memory-bounded row groups."""

import numpy as np
import pytest
import torch

from npeff.errors import InvalidArgumentError
from npeff.ops import PefSpec, build_store
from tests import tolerances
from tests.fixtures import REVIEWS
from tests.ops.pef.references import (MODEL_FORMULATIONS, TASKS, brute_force, fisher_norm, gram_distance, load,
                                      lrm_rows, rows_of, unit_pef)

PEF_RTOL = tolerances.FLOAT32_STORED_PEF["rtol"]


@pytest.mark.parametrize("exact_rows", ["complement", "classes"])
@pytest.mark.parametrize("name,formulation", MODEL_FORMULATIONS)
def test_exact_pefs_equal_brute_force_fisher(tmp_path, tiny_models, name, formulation, exact_rows):
    """C - 1 complement rows (the default) and one row per class both give the brute-force Fisher."""
    model, tokenizer = load(tiny_models, name, formulation)
    task = TASKS[formulation]
    store = build_store(model, REVIEWS, task, tmp_path / "s", tokenizer=tokenizer, projection="none",
                        batch_size=3, pef=PefSpec(exact_rows=exact_rows))
    names = store.manifest["parameter_layout"]["names"]
    table = store.examples.to_pylist()
    data = store.read()
    for b, example in enumerate(REVIEWS):
        reference, probs = brute_force(model, tokenizer, task, example, names)
        g = torch.from_numpy(data[b]).double()
        assert gram_distance(g, unit_pef(reference)) < PEF_RTOL
        assert table[b]["pef_norm"] == pytest.approx(fisher_norm(reference), rel=PEF_RTOL)
        np.testing.assert_allclose(table[b]["probs"], probs.numpy(), **tolerances.FLOAT32_STORED_PROBS)
        assert table[b]["prediction"] == int(probs.argmax())
        assert table[b]["text"] == task.render(example) and table[b]["status"] == "ok"
    classes = len(table[0]["probs"])
    assert store.rank == (classes - 1 if exact_rows == "complement" else classes)
    assert store.dim == store.manifest["parameter_layout"]["n_total"]
    assert store.manifest["pef_spec"]["pef"]["exact_rows"] == exact_rows


def test_any_torch_module(tmp_path):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    examples = [{"input": torch.randn(5, dtype=torch.float64), "label": i % 3} for i in range(6)]
    store = build_store(model, examples, None, tmp_path / "s", num_classes=3, projection="none", batch_size=4)
    params = list(model.parameters())
    for b, example in enumerate(examples):
        reference = lrm_rows(torch.log_softmax(model(example["input"][None])[0], 0), params)
        assert gram_distance(rows_of(store, b), unit_pef(reference)) < PEF_RTOL
    assert store.examples["label"].to_pylist() == [0, 1, 2, 0, 1, 2]


def test_default_parameters_exclude_embeddings_and_norms(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    store = build_store(model, REVIEWS[:2], TASKS["label-tokens"], tmp_path / "s", tokenizer=tokenizer, dim=32)
    names = store.manifest["parameter_layout"]["names"]
    assert not any("wte" in n or "wpe" in n or ".ln_" in n or "ln_f" in n for n in names)
    assert "transformer.h.0.attn.c_attn.weight" in names
    only_mlp = build_store(model, REVIEWS[:2], TASKS["label-tokens"], tmp_path / "mlp", tokenizer=tokenizer,
                           dim=32, include=("*.mlp.*",), exclude=("*.bias",))
    names = only_mlp.manifest["parameter_layout"]["names"]
    assert names == ["transformer.h.0.mlp.c_fc.weight", "transformer.h.0.mlp.c_proj.weight",
                     "transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.weight"]
    assert only_mlp.manifest["parameter_layout"]["n_total"] == 4 * 16 * 64


def test_parameter_shared_by_the_whole_batch_is_refused(tmp_path, tiny_models):
    """GPT-2's position embeddings are broadcast over the batch: no per-example gradient."""
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    with pytest.raises(InvalidArgumentError, match="feeds all examples of a batch at once"):
        build_store(model, REVIEWS[:3], TASKS["label-tokens"], tmp_path / "wpe", tokenizer=tokenizer,
                    projection="none", include=("transformer.wpe.*",))


def test_small_memory_budget_gives_the_same_pefs(tmp_path, tiny_models):
    """Rows processed in groups (and tensors in row chunks) under a tiny budget: same result."""
    model, tokenizer = load(tiny_models, "gpt2", "suffixes")
    task = TASKS["suffixes"]
    whole = build_store(model, REVIEWS, task, tmp_path / "a", tokenizer=tokenizer, dim=64, batch_size=5,
                        pef=PefSpec(kind="eps", eps_rows=5))
    pieces = build_store(model, REVIEWS, task, tmp_path / "b", tokenizer=tokenizer, dim=64, batch_size=5,
                         pef=PefSpec(kind="eps", eps_rows=5), memory_budget=4096)
    np.testing.assert_allclose(pieces.read(), whole.read(), **tolerances.FLOAT32_VS_FLOAT64)


def test_large_tensors_are_cut_along_their_first_dimension_not_the_rows(tmp_path, monkeypatch):
    """Under a budget that holds every row's output gradients but not a whole weight's per-example
    gradients, each weight is projected in blocks of its first dimension, each block for all rows
    of the batch at once (one hash per entry per batch), and the PEFs are the same."""
    import npeff.ops.pef.batch as batch_module

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 512), torch.nn.Tanh(), torch.nn.Linear(512, 3))
    examples = [{"input": torch.randn(8), "label": i % 3} for i in range(5)]
    pef = PefSpec(kind="eps", eps_rows=4)
    whole = build_store(model, examples, None, tmp_path / "a", dim=64, batch_size=5, pef=pef, num_classes=3)
    calls = []
    original = batch_module.project

    def recording(block, **kwargs):
        calls.append((kwargs["offset"], block.shape))
        return original(block, **kwargs)

    monkeypatch.setattr(batch_module, "project", recording)
    cut = build_store(model, examples, None, tmp_path / "b", dim=64, batch_size=5, pef=pef, num_classes=3,
                      memory_budget=64 << 10)
    np.testing.assert_allclose(cut.read(), whole.read(), **tolerances.FLOAT32_VS_FLOAT64)
    assert {shape[0] for _, shape in calls} == {5 * 4}  # every call: all rows of all examples
    layout = whole.config.parameter_layout
    blocks = {}
    for offset, shape in calls:  # one batch: each tensor's blocks tile it exactly once
        tensor = max(i for i, start in enumerate(layout.offsets) if start <= offset)
        blocks.setdefault(tensor, []).append((offset, shape[1]))
    assert sorted(blocks) == list(range(len(layout.names)))
    for tensor, parts in blocks.items():
        position = layout.offsets[tensor]
        for offset, width in sorted(parts):
            assert offset == position
            position += width
        assert position == layout.offsets[tensor] + int(np.prod(layout.shapes[tensor]))
    assert len(blocks[layout.names.index("0.weight")]) > 1 and len(blocks[layout.names.index("2.weight")]) > 1


def test_rows_share_projection_calls_in_pairs_when_one_row_exceeds_the_budget(tmp_path, monkeypatch):
    """When one row's output gradients alone exceed the budget, the rows still go in groups of two
    (the first row's output gradients held, the second's used as they arrive): each projection call
    holds two rows of every example, and the exact PEFs equal the brute-force Fisher."""
    import npeff.ops.pef.batch as batch_module
    from npeff.ops.pef.per_example import row_group_size

    assert row_group_size(5, row_bytes=10_000, memory_budget=4096) == 2
    assert row_group_size(5, row_bytes=1_000, memory_budget=4096) == 5
    assert row_group_size(1, row_bytes=10_000, memory_budget=4096) == 1
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 64), torch.nn.Tanh(), torch.nn.Linear(64, 5)).double()
    examples = [{"input": torch.randn(6, dtype=torch.float64), "label": i % 5} for i in range(4)]
    rows_per_call = []
    original = batch_module.project

    def recording(block, **kwargs):
        rows_per_call.append((block.shape[0], block.shape[1]))
        return original(block, **kwargs)

    monkeypatch.setattr(batch_module, "project", recording)
    budget = 4 * 64 * 8 // 2  # half of one row's output gradients (the 64 hidden outputs dominate)
    pef = PefSpec(exact_rows="classes")  # 5 rows: groups of 2, 2, 1
    projected = build_store(model, examples, None, tmp_path / "p", num_classes=5, dim=32, batch_size=4, pef=pef,
                            memory_budget=budget)
    n = projected.config.parameter_layout.n_total
    covered = {}  # rows per call -> entries projected at that many rows
    for rows, width in rows_per_call:
        covered[rows] = covered.get(rows, 0) + width
    assert covered == {4 * 2: 2 * n, 4 * 1: n}  # two passes over n at two rows, one at one
    whole = build_store(model, examples, None, tmp_path / "w", num_classes=5, dim=32, batch_size=4, pef=pef)
    np.testing.assert_allclose(projected.read(), whole.read(), **tolerances.FLOAT32_VS_FLOAT64)
    exact = build_store(model, examples, None, tmp_path / "e", num_classes=5, projection="none", batch_size=4,
                        pef=pef, memory_budget=budget)
    params = list(model.parameters())
    for b, example in enumerate(examples):
        reference = lrm_rows(torch.log_softmax(model(example["input"][None])[0], 0), params)
        assert gram_distance(rows_of(exact, b), unit_pef(reference)) < PEF_RTOL


def test_each_layer_is_projected_while_the_backward_pass_goes_on(tmp_path, monkeypatch, tiny_models):
    """With one row, a layer's parameters are projected as soon as the backward pass has produced
    its output gradient: the last block's weights before the first block's output gradient exists
    (so the model's output gradients are never all held at once)."""
    import npeff.ops.pef.batch as batch_module
    from npeff.ops.pef import per_example

    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    events = []
    original_project, original_backward = batch_module.project, per_example._Tap.backward

    def project(block, **kwargs):
        events.append(("project", kwargs["offset"]))
        return original_project(block, **kwargs)

    def backward(ctx, grad):
        events.append(("gradient", type(ctx.recorder.calls[ctx.index].module).__name__, ctx.index))
        return original_backward(ctx, grad)

    monkeypatch.setattr(batch_module, "project", project)
    monkeypatch.setattr(per_example._Tap, "backward", staticmethod(backward))
    store = build_store(model, REVIEWS[:2], TASKS["label-tokens"], tmp_path / "s", tokenizer=tokenizer, dim=32,
                        batch_size=2, pef=PefSpec(kind="gradient"))
    layout = store.config.parameter_layout
    last_block = layout.offsets[layout.names.index("transformer.h.1.mlp.c_proj.weight")]
    first_gradient = min(i for i, event in enumerate(events) if event[0] == "gradient" and event[2] == 0)
    assert events.index(("project", last_block)) < first_gradient
    assert sum(event[0] == "project" for event in events) >= len(layout.names)
    reference = build_store(model, REVIEWS[:2], TASKS["label-tokens"], tmp_path / "r", tokenizer=tokenizer,
                            dim=32, batch_size=1, pef=PefSpec(kind="gradient"))
    np.testing.assert_allclose(store.read(), reference.read(), **tolerances.FLOAT32_VS_FLOAT64)


def test_tensors_of_rules_that_cannot_slice_are_cut_along_the_rows(tmp_path, tiny_models):
    """GPT-2's tied token embedding (an Embedding and the LM head share it) has no sliceable rule:
    under a tiny budget its rows are split instead, with the same PEFs."""
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task, pef = TASKS["label-tokens"], PefSpec(kind="eps", eps_rows=3)
    include = ("transformer.wte.*", "transformer.h.0.mlp.*")
    whole = build_store(model, REVIEWS, task, tmp_path / "a", tokenizer=tokenizer, dim=64, pef=pef, include=include)
    cut = build_store(model, REVIEWS, task, tmp_path / "b", tokenizer=tokenizer, dim=64, pef=pef, include=include,
                      memory_budget=4096)
    np.testing.assert_allclose(cut.read(), whole.read(), **tolerances.FLOAT32_VS_FLOAT64)


def test_weight_blocks_are_written_into_one_reused_buffer(tmp_path, monkeypatch):
    """Every block of a linear weight is a view of the same allocation (no page faults per block),
    each one projected before the next overwrites it: the PEFs equal the brute-force Fisher."""
    import npeff.ops.pef.batch as batch_module

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 256), torch.nn.Tanh(), torch.nn.Linear(256, 3)).double()
    examples = [{"input": torch.randn(6, dtype=torch.float64), "label": i % 3} for i in range(4)]
    storages = []
    original = batch_module.project

    def recording(block, **kwargs):
        storages.append((kwargs["offset"], block.untyped_storage().data_ptr(), block.numel()))
        return original(block, **kwargs)

    monkeypatch.setattr(batch_module, "project", recording)
    store = build_store(model, examples, None, tmp_path / "s", num_classes=3, dim=64, batch_size=4,
                        memory_budget=16 << 10)
    layout = store.config.parameter_layout
    weights = [(layout.offsets[i], layout.offsets[i] + int(np.prod(layout.shapes[i])))
               for i in (layout.names.index("0.weight"), layout.names.index("2.weight"))]
    blocks = [(ptr, size) for offset, ptr, size in storages if any(lo <= offset < hi for lo, hi in weights)]
    growths = sum(size > max([0] + [s for _, s in blocks[:i]]) for i, (_, size) in enumerate(blocks))
    assert len(blocks) > 4 and len({ptr for ptr, _ in blocks}) <= growths < len(blocks) / 2
    exact = build_store(model, examples, None, tmp_path / "exact", num_classes=3, projection="none", batch_size=4,
                        memory_budget=16 << 10)
    params = list(model.parameters())
    for b, example in enumerate(examples):
        reference = lrm_rows(torch.log_softmax(model(example["input"][None])[0], 0), params)
        assert gram_distance(rows_of(exact, b), unit_pef(reference)) < PEF_RTOL


def test_block_buffer_grows_to_the_largest_block_and_reuses_it():
    from npeff.ops.pef.block_buffer import BlockBuffer

    buffer = BlockBuffer()
    small = buffer.view((2, 3), torch.float32, torch.device("cpu"))
    again = buffer.view((3, 2), torch.float32, torch.device("cpu"))
    assert again.data_ptr() == small.data_ptr() and again.shape == (3, 2) and again.is_contiguous()
    large = buffer.view((4, 5), torch.float32, torch.device("cpu"))
    assert large.shape == (4, 5) and buffer.view((1, 2), torch.float32, "cpu").data_ptr() == large.data_ptr()
    assert buffer.view((2,), torch.float64, "cpu").dtype == torch.float64
