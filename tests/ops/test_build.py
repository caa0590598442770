"""PEF builds against brute-force float64 references on tiny models (one example, one class at a time)."""

import numpy as np
import pytest
import torch

from npeff.cuda_ops import project
from npeff.errors import InvalidArgumentError, NpeffError
from npeff.ops import PefSpec, TaskSpec, build_store
from npeff.ops.pef.build import example_range
from npeff.ops.pef.loading import load_model_and_tokenizer
from npeff.ops.pef.tasks import TaskError
from npeff.store import open_store
from tests.fixtures import REVIEWS

TEMPLATE = "review : {text} sentiment :"
TASKS = {
    "label-tokens": TaskSpec(formulation="label-tokens", template=TEMPLATE, labels=("good", "bad"),
                             label_field="label"),
    "suffixes": TaskSpec(formulation="suffixes", template=TEMPLATE,
                         labels=("very good", "not good", "okay"), label_field="label"),
    "next-token": TaskSpec(formulation="next-token", template=TEMPLATE),
    "classifier": TaskSpec(formulation="classifier", template="{text}", label_field="label"),
}
RTOL = 1e-6


def load(tiny_models, name, formulation):
    model, tokenizer = load_model_and_tokenizer(tiny_models[name], formulation, dtype="float64")
    return model, tokenizer


def manual_log_probs(model, tokenizer, task, example):
    """The formulation written out for a single unpadded example."""
    text = task.render(example)
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    if task.formulation == "classifier":
        return torch.log_softmax(model(input_ids=ids).logits[0], 0)
    if task.formulation == "suffixes":
        scores = []
        for label in task.labels:
            suffix = tokenizer(label, add_special_tokens=False)["input_ids"]
            full = torch.cat([ids, torch.tensor([suffix])], dim=1)
            logp = torch.log_softmax(model(input_ids=full).logits[0], -1)
            scores.append(sum(logp[ids.shape[1] - 1 + k, t] for k, t in enumerate(suffix)))
        return torch.log_softmax(torch.stack(scores), 0)
    last = torch.log_softmax(model(input_ids=ids).logits[0, -1], -1)
    if task.formulation == "next-token":
        return last
    firsts = [tokenizer(label, add_special_tokens=False)["input_ids"][0] for label in task.labels]
    return torch.log_softmax(model(input_ids=ids).logits[0, -1][firsts], 0)


def brute_force(model, tokenizer, task, example, names, kind="exact"):
    """(B, probs): rows B[c] = sqrt(p_c) g_c (or the predicted class's g for kind='gradient'), each g_c
    from its own autograd.grad on the single example, so that F = B^T B = sum_c p_c g_c g_c^T."""
    params = dict(model.named_parameters())
    chosen = [params[n] for n in names]
    for p in model.parameters():
        p.requires_grad_(True)
    log_probs = manual_log_probs(model, tokenizer, task, example)
    probs = log_probs.exp().detach()
    classes = [int(probs.argmax())] if kind == "gradient" else range(len(log_probs))
    rows = []
    for c in classes:
        g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(log_probs[c], chosen, retain_graph=True)])
        rows.append(g if kind == "gradient" else probs[c].sqrt() * g)
    return torch.stack(rows), probs


def fisher_norm(b):
    """||B^T B||_F computed as ||B B^T||_F (same nonzero spectrum), without n x n matrices."""
    return float(torch.linalg.matrix_norm(b @ b.T))


def gram_distance(a, b):
    """||A^T A - B^T B||_F / ||B^T B||_F in float64, through the small Gram matrices:
    ||A^T A - B^T B||^2 = ||A A^T||^2 + ||B B^T||^2 - 2 ||A B^T||^2."""
    aa, bb, ab = (float(torch.linalg.matrix_norm(x) ** 2) for x in (a @ a.T, b @ b.T, a @ b.T))
    return max(aa + bb - 2 * ab, 0.0) ** 0.5 / bb ** 0.5


def rows_of(store, b):
    return torch.from_numpy(store.read(b, b + 1)[0]).double()


@pytest.mark.parametrize("name,formulation", [
    ("gpt2", "label-tokens"), ("llama", "label-tokens"), ("gpt2", "suffixes"), ("llama", "suffixes"),
    ("gpt2", "next-token"), ("classifier", "classifier"),
])
def test_exact_pefs_equal_brute_force_fisher(tmp_path, tiny_models, name, formulation):
    model, tokenizer = load(tiny_models, name, formulation)
    task = TASKS[formulation]
    store = build_store(model, REVIEWS, task, tmp_path / "s", tokenizer=tokenizer, projection="none",
                        batch_size=3)
    names = store.manifest["parameter_layout"]["names"]
    table = store.examples.to_pylist()
    data = store.read()
    for b, example in enumerate(REVIEWS):
        reference, probs = brute_force(model, tokenizer, task, example, names)
        g = torch.from_numpy(data[b]).double()
        assert gram_distance(g, reference / fisher_norm(reference) ** 0.5) < RTOL
        assert table[b]["pef_norm"] == pytest.approx(fisher_norm(reference), rel=RTOL)
        np.testing.assert_allclose(table[b]["probs"], probs.numpy(), rtol=1e-5)
        assert table[b]["prediction"] == int(probs.argmax())
        assert table[b]["text"] == task.render(example) and table[b]["status"] == "ok"
    assert store.rank == len(table[0]["probs"]) and store.dim == store.manifest["parameter_layout"]["n_total"]


def test_gradient_pefs_are_the_predicted_class_gradient(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    store = build_store(model, REVIEWS, task, tmp_path / "s", tokenizer=tokenizer, projection="none",
                        pef=PefSpec(kind="gradient"))
    assert store.rank == 1 and store.manifest["kind"] == "gradient"
    names = store.manifest["parameter_layout"]["names"]
    for b, example in enumerate(REVIEWS):
        reference, _ = brute_force(model, tokenizer, task, example, names, kind="gradient")
        g = rows_of(store, b)[0]
        np.testing.assert_allclose(g.numpy(), (reference[0] / reference[0].norm()).numpy(), atol=1e-6)
        assert store.examples["pef_norm"][b].as_py() == pytest.approx(float(reference[0].norm() ** 2), rel=RTOL)


def test_projected_rows_equal_projected_full_rows(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    full = build_store(model, REVIEWS, task, tmp_path / "full", tokenizer=tokenizer, projection="none")
    small = build_store(model, REVIEWS, task, tmp_path / "small", tokenizer=tokenizer, dim=64, seed=11,
                        backend="cpu")
    assert small.manifest["projection"]["seed"] == 11 and small.dim == 64
    full_rows = full.read() * np.sqrt(np.array(full.examples["pef_norm"]))[:, None, None]
    small_rows = small.read() * np.sqrt(np.array(small.examples["pef_norm"]))[:, None, None]
    expected = project(full_rows.reshape(-1, full.dim), d=64, seed=11, n_total=full.dim, backend="cpu")
    np.testing.assert_allclose(small_rows.reshape(-1, 64), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_eps_error_falls_as_rows_grow(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "next-token")
    task = TASKS["next-token"]
    exact = build_store(model, REVIEWS, task, tmp_path / "exact", tokenizer=tokenizer, projection="none")
    reference = [torch.from_numpy(g).double() for g in exact.read()]
    errors = {}
    for rows in (1, 8, 64):
        per_seed = []
        for seed in range(3):
            store = build_store(model, REVIEWS, task, tmp_path / f"eps{rows}-{seed}", tokenizer=tokenizer,
                                projection="none", pef=PefSpec(kind="eps", eps_rows=rows, seed=seed))
            assert store.rank == rows and store.manifest["pef_spec"]["pef"]["eps_rows"] == rows
            for g, ref in zip(store.read(), reference):
                per_seed.append(gram_distance(torch.from_numpy(g).double(), ref))
        errors[rows] = float(np.mean(per_seed))
    assert errors[64] < errors[8] < errors[1]
    assert errors[64] < 0.5 * errors[1]


def test_svd_reduction_keeps_the_top_k_part(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "suffixes")
    task = TASKS["suffixes"]  # three classes: rank 3
    full = build_store(model, REVIEWS, task, tmp_path / "full", tokenizer=tokenizer, projection="none")
    reduced = build_store(model, REVIEWS, task, tmp_path / "svd", tokenizer=tokenizer, projection="none",
                          pef=PefSpec(kind="exact", svd_rank=2))
    assert reduced.rank == 2
    for b in range(len(REVIEWS)):
        _, s, vh = torch.linalg.svd(rows_of(full, b), full_matrices=False)
        top2 = s[:2, None] * vh[:2]  # top2^T top2 is the top-2 part of G^T G
        assert gram_distance(rows_of(reduced, b), top2 / fisher_norm(top2) ** 0.5) < 1e-5
        assert reduced.examples["pef_norm"][b].as_py() > 0


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


def test_included_embeddings_and_norms_match_brute_force(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    store = build_store(model, REVIEWS[:3], task, tmp_path / "s", tokenizer=tokenizer, projection="none",
                        include=("transformer.wte.*", "transformer.h.0.ln_1.*"))
    names = store.manifest["parameter_layout"]["names"]
    assert names == ["transformer.wte.weight", "transformer.h.0.ln_1.weight", "transformer.h.0.ln_1.bias"]
    for b in range(3):
        reference, _ = brute_force(model, tokenizer, task, REVIEWS[b], names)
        assert gram_distance(rows_of(store, b), reference / fisher_norm(reference) ** 0.5) < RTOL
    # GPT-2's position embeddings are broadcast over the batch: no per-example gradient
    with pytest.raises(InvalidArgumentError, match="feeds all examples of a batch at once"):
        build_store(model, REVIEWS[:3], task, tmp_path / "wpe", tokenizer=tokenizer, projection="none",
                    include=("transformer.wpe.*",))


def test_any_torch_module(tmp_path):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    examples = [{"input": torch.randn(5, dtype=torch.float64), "label": i % 3} for i in range(6)]
    store = build_store(model, examples, None, tmp_path / "s", num_classes=3, projection="none", batch_size=4)
    params = list(model.parameters())
    for b, example in enumerate(examples):
        log_probs = torch.log_softmax(model(example["input"][None])[0], 0)
        reference = torch.stack([
            log_probs[c].exp().detach().sqrt() * torch.cat(
                [x.reshape(-1) for x in torch.autograd.grad(log_probs[c], params, retain_graph=True)])
            for c in range(3)])
        assert gram_distance(rows_of(store, b), reference / fisher_norm(reference) ** 0.5) < RTOL
    assert store.examples["label"].to_pylist() == [0, 1, 2, 0, 1, 2]


def test_shards_of_a_build_merge_to_the_whole(tmp_path, tiny_models):
    from npeff.store import merge_stores

    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    whole = build_store(model, REVIEWS, task, tmp_path / "whole", tokenizer=tokenizer, dim=64)
    parts = [build_store(model, REVIEWS, task, tmp_path / f"part{i}", tokenizer=tokenizer, dim=64,
                         shard=(i, 2)) for i in range(2)]
    assert [p.num_examples for p in parts] == [2, 3]
    assert parts[0].fingerprint == whole.fingerprint
    merged = merge_stores(tmp_path / "merged", [p.path for p in parts])
    np.testing.assert_allclose(merged.read(), whole.read(), atol=1e-6)
    assert merged.examples["source_id"].to_pylist() == [str(i) for i in range(5)]
    assert example_range(10, 7, (2, 3)) == (4, 7)


class Interrupting(list):
    """Examples that raise when index ``stop_at`` is read (a build killed half-way)."""

    def __init__(self, items, stop_at):
        super().__init__(items)
        self.stop_at = stop_at

    def __getitem__(self, index):
        if index == self.stop_at:
            raise KeyboardInterrupt
        return super().__getitem__(index)


def test_resume_after_interruption(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    task = TASKS["label-tokens"]
    many = [dict(REVIEWS[i % 5], text=REVIEWS[i % 5]["text"] + " very" * (i // 5)) for i in range(12)]
    reference = build_store(model, many, task, tmp_path / "ref", tokenizer=tokenizer, dim=64, shard_examples=2,
                            batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        build_store(model, Interrupting(many, 9), task, tmp_path / "s", tokenizer=tokenizer, dim=64,
                    shard_examples=2, batch_size=2)
    partial = open_store(tmp_path / "s")
    assert partial.status == "building" and 0 < partial.num_examples < 9
    done = build_store(model, many, task, tmp_path / "s", tokenizer=tokenizer, dim=64, shard_examples=2,
                       batch_size=2, resume=True)
    np.testing.assert_array_equal(done.read(), reference.read())
    assert done.examples["text"].to_pylist() == reference.examples["text"].to_pylist()


def test_dry_run_plans_without_writing(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    plan = build_store(model, REVIEWS, TASKS["label-tokens"], tmp_path / "s", tokenizer=tokenizer,
                       pef=PefSpec(kind="eps", eps_rows=4), dry_run=True, max_examples=4)
    assert (plan.num_examples, plan.rank, plan.dim, plan.num_classes) == (4, 4, 8192, 2)
    assert plan.store_bytes == 4 * 4 * 8192 * 4 and "n = " in plan.describe()
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("task,message", [
    (TaskSpec(formulation="label-tokens", template="{sentence}", labels=("good", "bad")), "no field 'sentence'"),
    (TaskSpec(formulation="label-tokens", template="{text}", labels=("good", "")), "tokenizes to nothing"),
    (TaskSpec(formulation="label-tokens", template="{text}", labels=("good movie", "good plot")),
     "start with the same token"),
    (TaskSpec(formulation="label-tokens", template="{text}", labels=("good", "bad"), label_field="gold"),
     "no field 'gold'"),
])
def test_bad_tasks_fail_before_writing(tmp_path, tiny_models, task, message):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    with pytest.raises(TaskError, match=message):
        build_store(model, REVIEWS, task, tmp_path / "s", tokenizer=tokenizer)
    assert not (tmp_path / "s").exists()


def test_task_file_validation(tmp_path):
    bad = tmp_path / "task.yaml"
    for text, message in [
        ("formulation: vibes\ntemplate: '{text}'\n", "formulation must be one of"),
        ("template: '{text}'\n", "lacks the required key 'formulation'"),
        ("formulation: next-token\ntemplate: 'no fields'\n", "uses no data field"),
        ("formulation: next-token\ntemplate: '{text}'\nlabels: [a, b]\n", "takes no 'labels'"),
        ("formulation: label-tokens\ntemplate: '{text}'\nlabels: [a]\n", "at least two"),
        ("formulation: classifier\ntemplate: '{text}'\ncolour: red\n", "unknown task keys"),
        ("formulation: [unclosed\n", "not valid YAML"),
    ]:
        bad.write_text(text)
        with pytest.raises(TaskError, match=message):
            TaskSpec.from_yaml(bad)
    with pytest.raises(TaskError, match="does not exist"):
        TaskSpec.from_yaml(tmp_path / "missing.yaml")
    assert issubclass(TaskError, NpeffError)


def test_bad_pef_and_projection_options(tmp_path, tiny_models):
    with pytest.raises(InvalidArgumentError, match="eps_rows is given exactly"):
        PefSpec(kind="exact", eps_rows=4)
    with pytest.raises(InvalidArgumentError, match="does not apply to --gradient"):
        PefSpec(kind="gradient", svd_rank=1)
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    with pytest.raises(InvalidArgumentError, match="no parameter is selected"):
        build_store(model, REVIEWS, TASKS["label-tokens"], tmp_path / "s", tokenizer=tokenizer,
                    include=("nothing.*",))
    with pytest.raises(InvalidArgumentError, match="use --eps"):
        big = torch.nn.Linear(3, 5000).double()
        build_store(big, [{"input": torch.zeros(3)}], None, tmp_path / "s", num_classes=5000)
    assert not (tmp_path / "s").exists()


def test_small_memory_budget_gives_the_same_pefs(tmp_path, tiny_models):
    """Rows processed in groups (and tensors in row chunks) under a tiny budget: same result."""
    model, tokenizer = load(tiny_models, "gpt2", "suffixes")
    task = TASKS["suffixes"]
    whole = build_store(model, REVIEWS, task, tmp_path / "a", tokenizer=tokenizer, dim=64, batch_size=5,
                        pef=PefSpec(kind="eps", eps_rows=5))
    pieces = build_store(model, REVIEWS, task, tmp_path / "b", tokenizer=tokenizer, dim=64, batch_size=5,
                         pef=PefSpec(kind="eps", eps_rows=5), memory_budget=4096)
    np.testing.assert_allclose(pieces.read(), whole.read(), rtol=1e-5, atol=1e-6)


def test_label_names_are_recorded(tmp_path, tiny_models):
    model, tokenizer = load(tiny_models, "gpt2", "label-tokens")
    store = build_store(model, REVIEWS[:2], TASKS["label-tokens"], tmp_path / "a", tokenizer=tokenizer, dim=64)
    assert store.manifest["pef_spec"]["label_names"] == [w.strip() for w in TASKS["label-tokens"].labels]
    model, tokenizer = load(tiny_models, "classifier", "classifier")
    store = build_store(model, REVIEWS[:2], TASKS["classifier"], tmp_path / "b", tokenizer=tokenizer, dim=64)
    assert "label_names" not in store.manifest["pef_spec"]  # LABEL_0.. says nothing
    model.config.id2label = {0: "good", 1: "bad", 2: "meh"}
    store = build_store(model, REVIEWS[:2], TASKS["classifier"], tmp_path / "c", tokenizer=tokenizer, dim=64)
    assert store.manifest["pef_spec"]["label_names"] == ["good", "bad", "meh"]
