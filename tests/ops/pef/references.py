"""Brute-force float64 references for PEF tests: the formulations written out for one unpadded
example, LRM-PEF rows from one ``autograd.grad`` per class, and Gram-matrix distances."""

import torch

from npeff.ops import TaskSpec
from npeff.ops.pef.loading import load_model_and_tokenizer

TEMPLATE = "review : {text} sentiment :"
TASKS = {
    "label-tokens": TaskSpec(formulation="label-tokens", template=TEMPLATE, labels=("good", "bad"),
                             label_field="label"),
    "suffixes": TaskSpec(formulation="suffixes", template=TEMPLATE,
                         labels=("very good", "not good", "okay"), label_field="label"),
    "next-token": TaskSpec(formulation="next-token", template=TEMPLATE),
    "classifier": TaskSpec(formulation="classifier", template="{text}", label_field="label"),
}

#: (tiny model, formulation) pairs that every formulation is checked on
MODEL_FORMULATIONS = [
    ("gpt2", "label-tokens"), ("llama", "label-tokens"), ("gpt2", "suffixes"), ("llama", "suffixes"),
    ("gpt2", "next-token"), ("classifier", "classifier"),
]


def load(tiny_models, name, formulation):
    """A tiny model (float64) and its tokenizer."""
    return load_model_and_tokenizer(tiny_models[name], formulation, dtype="float64")


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


def lrm_rows(log_probs, params, kind="exact"):
    """Rows ``sqrt(p_c) g_c`` (or the predicted class's ``g`` for kind='gradient'), each ``g_c``
    from its own ``autograd.grad`` of ``log_probs[c]``, so that ``F = B^T B = sum_c p_c g_c g_c^T``."""
    probs = log_probs.exp().detach()
    classes = [int(probs.argmax())] if kind == "gradient" else range(len(log_probs))
    rows = []
    for c in classes:
        g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(log_probs[c], params, retain_graph=True)])
        rows.append(g if kind == "gradient" else probs[c].sqrt() * g)
    return torch.stack(rows)


def brute_force(model, tokenizer, task, example, names, kind="exact"):
    """(B, probs) of one example: :func:`lrm_rows` over the parameters ``names``."""
    params = dict(model.named_parameters())
    for p in model.parameters():
        p.requires_grad_(True)
    log_probs = manual_log_probs(model, tokenizer, task, example)
    return lrm_rows(log_probs, [params[n] for n in names], kind), log_probs.exp().detach()


def fisher_norm(b):
    """||B^T B||_F computed as ||B B^T||_F (same nonzero spectrum), without n x n matrices."""
    return float(torch.linalg.matrix_norm(b @ b.T))


def gram_distance(a, b):
    """||A^T A - B^T B||_F / ||B^T B||_F in float64, through the small Gram matrices:
    ||A^T A - B^T B||^2 = ||A A^T||^2 + ||B B^T||^2 - 2 ||A B^T||^2."""
    aa, bb, ab = (float(torch.linalg.matrix_norm(x) ** 2) for x in (a @ a.T, b @ b.T, a @ b.T))
    return max(aa + bb - 2 * ab, 0.0) ** 0.5 / bb ** 0.5


def unit_pef(b):
    """``B`` scaled so that ``||B^T B||_F = 1`` (as stored)."""
    return b / fisher_norm(b) ** 0.5


def rows_of(store, b):
    """The stored PEF rows ``[r, d]`` of example ``b`` in float64."""
    return torch.from_numpy(store.read(b, b + 1)[0]).double()
