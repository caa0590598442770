"""``npeff demo``: the main job end to end on the planted task, with no network.

A tiny GPT-2 classifier is trained on the planted dataset (:mod:`npeff.ops.demo.planted`), then the
toolkit does what a user would do with a real model: build the PEF store, decompose it, write the
report, and measure how well components align with the planted strategies
(:mod:`npeff.ops.demo.alignment`).

The figures are a function of the seed, not of the machine's cores: the demo runs torch and numba
on a fixed number of threads (:attr:`DemoSettings.threads`, restored afterwards), since both sum
in an order that depends on how many threads share the work (torch's matrix products, the
projection's per-thread partial sums), and the training, the SAE and SED amplify a last-bit
difference into other figures. Projections run on the CPU kernel, GPU or not; SED in float64.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from npeff.ops.demo.alignment import alignment
from npeff.ops.demo.comparison import comparison_table, run_baselines
from npeff.ops.demo.planted import STRATEGIES, accuracy, make_dataset, make_model, make_tokenizer, train
from npeff.errors import InvalidArgumentError, StoreExistsError
from npeff.store._files import atomic_write_json, prepare_output_dir

#: the file that marks a folder as a demo's (only such folders are replaced with ``overwrite``)
MARKER = "npeff-demo.json"


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo; the defaults take a few minutes on two cores.

    ``threads`` is the number of threads torch and numba use during the demo: the figures depend
    on it (the order of floating-point sums does), so it is fixed, not taken from the machine.
    """

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
    perturb_baseline: int = 400
    sae_steps: int = 1500
    sae_batch_size: int = 1024
    sed_steps: int = 2000
    threads: int = 1

    def __post_init__(self):
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 1:
            raise InvalidArgumentError(f"DemoSettings.threads must be a positive integer, got {self.threads!r}")

    @classmethod
    def quick(cls, seed: int = 0) -> DemoSettings:
        """``npeff demo --quick``: 480 examples, d = 1024, 12 components; seconds, not minutes."""
        return cls(pef_examples=480, dim=1024, n_components=12, warmup_steps=100, joint_steps=800,
                   warmup_lr=1e-3, joint_lr=1e-3, seed=seed, sae_steps=500, sae_batch_size=256)


@contextlib.contextmanager
def fixed_threads(count: int) -> Iterator[None]:
    """Run the block with torch's intra-op threads and numba's at ``count``; both restored after.

    Torch's count is the process's; numba's is the calling thread's, which is where the demo's
    builds and perturbations call the projection.

    Raises:
        InvalidArgumentError: numba was started with fewer threads (``NUMBA_NUM_THREADS``).
    """
    import numba
    import torch

    if count > numba.config.NUMBA_NUM_THREADS:
        raise InvalidArgumentError(f"the demo runs on {count} threads but numba has only "
                                   f"{numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS); unset it or raise it")
    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(count)
    numba.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        numba.set_num_threads(numba_threads)


def _is_demo_folder(path: Path) -> bool:
    return (path / MARKER).is_file()


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def run_demo(out: str | Path, settings: DemoSettings = DemoSettings(), *, overwrite: bool = False,
             progress: bool = False, log: Callable[[str], None] = lambda message: None) -> dict:
    """Run the whole demo into ``out``; returns the summary also written to ``out/summary.json``.

    Raises:
        StoreExistsError: (an ``OutputExistsError``) ``out`` is a file, a non-empty folder the demo did
            not make, or an earlier demo and ``overwrite`` is not set (nothing is touched then).
    """
    import datasets
    import transformers

    datasets.disable_progress_bars()  # the demo shows its own progress; the libraries' bars are noise here
    transformers.utils.logging.disable_progress_bar()
    out = prepare_output_dir(out, what="demo folder", is_ours=_is_demo_folder, overwrite=overwrite,
                             exists=StoreExistsError)
    atomic_write_json(out / MARKER, {"settings": asdict(settings)})
    with fixed_threads(settings.threads):
        summary = _run_steps(out, settings, progress=progress, log=log)
    atomic_write_json(out / "summary.json", summary)
    return summary


def _run_steps(out: Path, settings: DemoSettings, *, progress: bool, log: Callable[[str], None]) -> dict:
    """The seven steps of :func:`run_demo` into the prepared folder ``out``; returns the summary."""
    from npeff.ops.analysis import tunings
    from npeff.ops.pef import build_store, load_examples, load_model_and_tokenizer
    from npeff.ops.decomposition import DecomposeConfig, decompose
    from npeff.ops.perturb import PerturbSettings, perturb
    from npeff.ops.report import write_report
    from npeff.ops.pef.tasks import TaskSpec

    timings = {}
    started = time.perf_counter()

    log(f"1/7 making the planted dataset ({settings.train_examples} training and "
        f"{settings.pef_examples} analysis sentences, strategies: {', '.join(STRATEGIES)})")
    train_rows = make_dataset(settings.train_examples, settings.seed)
    analysis_rows = make_dataset(settings.pef_examples, settings.seed + 1)
    _write_jsonl(out / "train.jsonl", train_rows)
    _write_jsonl(out / "data.jsonl", analysis_rows)
    (out / "task.yaml").write_text("formulation: classifier\ntemplate: \"{text}\"\nlabel_field: label\n"
                                   "max_length: 16\n")

    log(f"2/7 training a tiny GPT-2 classifier ({settings.epochs} epochs)")
    tokenizer = make_tokenizer()
    model = make_model(settings.seed)
    losses = train(model, tokenizer, train_rows, epochs=settings.epochs, seed=settings.seed, lr=settings.train_lr,
                   progress=progress)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    train_accuracy = accuracy(model, tokenizer, train_rows)
    log(f"    training loss {losses[0]:.3f} -> {losses[-1]:.3f}; accuracy {train_accuracy:.1%} (train)")
    timings["train_s"] = time.perf_counter() - started

    log(f"3/7 building the PEF store (exact PEFs, projected to d={settings.dim})")
    mark = time.perf_counter()
    task = TaskSpec.from_yaml(out / "task.yaml")
    examples = load_examples(str(out / "data.jsonl"))
    network, loaded_tokenizer = load_model_and_tokenizer(str(out / "model"), task.formulation)
    store = build_store(network, examples, task, out / "store", tokenizer=loaded_tokenizer, dim=settings.dim,
                        seed=settings.seed, batch_size=32, backend="cpu", progress=progress,
                        model_name=str(out / "model"),
                        command=f"npeff build {out / 'model'} --data {out / 'data.jsonl'} --task "
                                f"{out / 'task.yaml'} --out {out / 'store'} --dim {settings.dim}")
    timings["build_s"] = time.perf_counter() - mark
    table = store.examples  # the build records each example's label and the model's prediction
    analysis_accuracy = float(np.mean(np.asarray(table.column("prediction").to_pylist())
                                      == np.asarray(table.column("label").to_pylist())))
    log(f"    accuracy on the analysed sentences: {analysis_accuracy:.1%}")

    log(f"4/7 decomposing into {settings.n_components} components "
        f"({settings.warmup_steps} warm-up + {settings.joint_steps} joint steps)")
    mark = time.perf_counter()
    config = DecomposeConfig(n_components=settings.n_components, warmup_steps=settings.warmup_steps,
                             joint_steps=settings.joint_steps, warmup_lr=settings.warmup_lr,
                             joint_lr=settings.joint_lr, seed=settings.seed)
    decomposition = decompose(store, config=config, out=out / "decomposition", progress=progress,
                              command=f"npeff decompose {out / 'store'} --out {out / 'decomposition'} "
                                      f"-C {settings.n_components}")
    timings["decompose_s"] = time.perf_counter() - mark

    log(f"5/7 perturbing the model along each component ({settings.perturb_baseline} baseline examples)")
    mark = time.perf_counter()
    perturbation = perturb(decomposition, store=store, model=str(out / "model"),
                           out=out / "decomposition" / "perturbation", progress=progress, backend="cpu",
                           settings=PerturbSettings(baseline=settings.perturb_baseline, seed=settings.seed))
    timings["perturb_s"] = time.perf_counter() - mark

    log("6/7 the paper's baselines on the same examples: G-NPEFF, gradient clustering, a TopK SAE; and SED")
    mark = time.perf_counter()
    strategies = [row["strategy"] for row in analysis_rows]
    baselines = run_baselines(out, settings, network=network, tokenizer=loaded_tokenizer, task=task,
                              examples=examples, strategies=strategies, progress=progress, log=log)
    timings.update(baselines["timings"], baselines_s=time.perf_counter() - mark)
    comparison = comparison_table({"NPEFF": decomposition, **baselines["outputs"]}, strategies)

    log("7/7 writing the report")
    report = write_report(decomposition, store, out=out / "report.html",
                          compare=list(baselines["outputs"].values()))
    tuning = tunings(decomposition, store).summary()
    aligned = alignment(decomposition.W, strategies)
    timings["total_s"] = time.perf_counter() - started
    summary = {
        "out": str(out), "report": str(report), "store": str(store.path), "decomposition": str(decomposition.path),
        "settings": asdict(settings), "train_losses": losses, "train_accuracy": train_accuracy,
        "analysis_accuracy": analysis_accuracy, "decomposition_losses": [float(decomposition.losses[0]),
                                                                        float(decomposition.losses[-1])],
        "tunings": tuning, "alignment": aligned, "timings": timings,
        "perturbation": {key: perturbation[key] for key in ("kl_ratio_geomean", "norm_ratio_geomean", "n_components")},
        "comparison": comparison,
    }
    return summary


__all__ = ["MARKER", "DemoSettings", "fixed_threads", "run_demo"]
