"""``npeff perturb``: perturb the model along components and measure how selectively their top
examples' predictions change (paper, sections 2.2.1 and 3.2, appendix E; Table 2).

For each component: its projected vector ``h`` is orthogonally rejected from the other components
(:mod:`~npeff.ops.perturb.rejection`), reconstructed in parameter space by compressed sensing
(:mod:`~npeff.ops.perturb.compressed_sensing`), and the model is moved by ``± magnitude * u / ||u||``
(:mod:`~npeff.ops.perturb.apply`). The KL divergence of the perturbed from the original predictions
(:mod:`~npeff.ops.perturb.evaluate`) on the component's top examples, over the same on a seeded random
baseline set, is the KL ratio (the larger of the two signs); the mean PEF norm of the top examples
over the baseline's is the norm ratio. Summaries are geometric means over the components.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from npeff.errors import InvalidArgumentError
from npeff.ops.perturb.apply import layout_parameters, parameter_norm, perturbed
from npeff.ops.perturb.evaluate import kl_divergence, predictive_log_probs
from npeff.ops.perturb.settings import PerturbSettings

#: at most this many magnitudes are tried per component when searching for a target KL
TARGET_KL_STEPS = 10
#: the search stops when the baseline KL is within this factor of the target
TARGET_KL_TOLERANCE = 1.25


class Perturber:
    """The model, its task formulation and the baseline examples' original predictions, ready to
    evaluate perturbations along directions in parameter space (not only NPEFF components).

    Args:
        model, tokenizer: the model the store was built from.
        store: the PEF store (its task, parameter layout, texts and PEF norms are used).
        settings: :class:`PerturbSettings`.
        device: the model's device.

    Notes:
        Memory: the model, one copy of the included parameters while perturbed, and ``[N, C]``
        log-probabilities of the examples evaluated.
    """

    def __init__(self, model, tokenizer, store, settings: PerturbSettings, *, device: str = "cpu"):
        from npeff.ops.pef.formulations import make_formulation
        from npeff.ops.pef.tasks import TaskSpec
        from npeff.store.manifest import ParameterLayout

        manifest = store.manifest
        spec = {key: value for key, value in (manifest.get("pef_spec") or {}).items()
                if key in ("formulation", "template", "labels", "label_field", "max_length")}
        if manifest.get("parameter_layout") is None:
            raise InvalidArgumentError(f"{store.path} records no parameter layout: it was not built by npeff build, "
                                       f"so its directions cannot be mapped to a model")
        if "template" not in spec:
            raise InvalidArgumentError(f"{store.path} records no text task (it was built from tensors); "
                                       f"perturbations are evaluated on the stored texts")
        self.layout = ParameterLayout.from_dict(manifest["parameter_layout"])
        self.model, self.settings, self.device = model, settings, device
        layout_parameters(model, self.layout)  # refuses a model that does not match the layout
        self.model.eval()
        self.formulation = make_formulation(TaskSpec.from_dict(spec), model, tokenizer, device)
        columns = store.examples.select(["text", "status", "pef_norm"]).to_pydict()
        self.texts = columns["text"]
        self.norms = np.asarray([np.nan if v is None else v for v in columns["pef_norm"]], dtype=np.float64)
        ok = np.flatnonzero(np.asarray(columns["status"]) == "ok")
        if len(ok) == 0:
            raise InvalidArgumentError(f"no example of {store.path} has status ok")
        rng = np.random.default_rng(settings.seed)
        self.baseline = np.sort(rng.choice(ok, size=min(settings.baseline, len(ok)), replace=False))
        self._original: dict[int, torch.Tensor] = {}
        self.theta_norm = parameter_norm(model, self.layout)

    def log_probs(self, indices: Sequence[int]) -> torch.Tensor:
        """``[len(indices), C]`` log-probabilities of the model as it is now."""
        return predictive_log_probs(self.formulation, [self.texts[i] for i in indices],
                                    batch_size=self.settings.batch_size)

    def original(self, indices: Sequence[int]) -> torch.Tensor:
        """The unperturbed log-probabilities (computed once per example)."""
        missing = [int(i) for i in indices if int(i) not in self._original]
        if missing:
            for i, row in zip(missing, self.log_probs(missing)):
                self._original[i] = row
        return torch.stack([self._original[int(i)] for i in indices])

    def mean_kl(self, indices: Sequence[int], u: torch.Tensor, magnitude: float) -> float:
        """Mean KL(original || perturbed by ``magnitude * u / ||u||``) over ``indices``."""
        original = self.original(indices)
        with perturbed(self.model, self.layout, u, magnitude):
            moved = self.log_probs(indices)
        return float(kl_divergence(original, moved).mean())

    def magnitude_for(self, u: torch.Tensor) -> tuple[float, float | None]:
        """The magnitude the settings ask for, and (with a target KL) the baseline KL it gives.

        With a target KL the magnitude is searched: near zero the KL grows as the magnitude squared
        (paper, equation 1), so each step rescales by ``sqrt(target / KL)`` (at most tenfold), from
        1e-3 ``||θ||``, never beyond ``||θ||``.
        """
        settings = self.settings
        if settings.magnitude is not None:
            return settings.magnitude, None
        if settings.relative_magnitude is not None:
            return settings.relative_magnitude * self.theta_norm, None
        magnitude = 1e-3 * self.theta_norm
        for _ in range(TARGET_KL_STEPS):
            kl = self.mean_kl(self.baseline, u, magnitude)
            if kl > 0 and abs(math.log(kl / settings.target_kl)) <= math.log(TARGET_KL_TOLERANCE):
                return magnitude, kl
            if magnitude >= self.theta_norm and kl < settings.target_kl:
                return magnitude, kl  # as far as a change the size of the parameters themselves goes
            factor = math.sqrt(settings.target_kl / kl) if kl > 0 else 10.0
            magnitude = min(magnitude * min(max(factor, 0.1), 10.0), self.theta_norm)
        return magnitude, None  # the last magnitude tried (its baseline KL is measured by the caller)

    def evaluate(self, u: torch.Tensor, top: Sequence[int]) -> dict:
        """KL and norm ratios of perturbing along ``u`` ``[n]`` for the examples ``top``."""
        magnitude, baseline_plus = self.magnitude_for(u)
        if baseline_plus is None:
            baseline_plus = self.mean_kl(self.baseline, u, magnitude)
        top_plus = self.mean_kl(top, u, magnitude)
        top_minus = self.mean_kl(top, u, -magnitude)
        baseline_minus = self.mean_kl(self.baseline, u, -magnitude)
        plus = top_plus / baseline_plus if baseline_plus > 0 else None
        minus = top_minus / baseline_minus if baseline_minus > 0 else None
        return {"kl_ratio": max((r for r in (plus, minus) if r is not None), default=None),
                "kl_ratio_plus": plus, "kl_ratio_minus": minus,
                "norm_ratio": float(np.nanmean(self.norms[list(top)]) / np.nanmean(self.norms[self.baseline])),
                "magnitude": magnitude, "kl_top_plus": top_plus, "kl_top_minus": top_minus,
                "kl_baseline_plus": baseline_plus, "kl_baseline_minus": baseline_minus, "n_top": len(top)}


def choose_components(n_components: int, components: Sequence[int] | None, sample: int | None,
                      seed: int) -> list[int]:
    """The components to perturb: those given, a seeded sample of ``sample``, or all."""
    if components:
        bad = [c for c in components if not 0 <= c < n_components]
        if bad:
            raise InvalidArgumentError(f"component {bad[0]} is out of range: the decomposition has {n_components} "
                                       f"components (0 to {n_components - 1})")
        return list(dict.fromkeys(int(c) for c in components))
    if sample is not None:
        if sample < 1:
            raise InvalidArgumentError(f"--sample must be >= 1, got {sample}")
        rng = np.random.default_rng(seed)
        return sorted(int(c) for c in rng.choice(n_components, size=min(sample, n_components), replace=False))
    return list(range(n_components))


def perturb(decomposition, *, store=None, model: str | None = None, out: str | Path | None = None,
            components: Sequence[int] | None = None, sample: int | None = None,
            settings: PerturbSettings | None = None, device: str = "cpu", backend: str = "auto",
            save_directions: bool = False, overwrite: bool = False, progress: bool = False,
            log: Callable[[str], None] = lambda message: None) -> dict:
    """Perturb the model along components of ``decomposition`` and measure the KL and norm ratios.

    Args:
        decomposition: a decomposition (or its path).
        store: its PEF store (default: the one it records).
        model: the model's folder or hub name (default: the one the store records).
        out: a directory for the results (resumable component by component); without it, nothing
            is written.
        components, sample: which components (default all; ``sample`` draws that many, seeded).
        settings: :class:`PerturbSettings` (rejection threshold, μ, magnitude rule, top, baseline).
        device: where the model runs and directions are reconstructed; backend: the projection's.
        save_directions: keep each reconstructed direction (sparse) in ``out/directions``.

    Returns:
        The summary: ``kl_ratio_geomean``, ``norm_ratio_geomean``, the settings, and ``components``
        (one record per component, as in ``out/components.parquet``).
    """
    from npeff.progress import progress_bar

    from npeff.ops.analysis import open_store_for, top_indices
    from npeff.ops.pef import load_model_and_tokenizer
    from npeff.ops.perturb import reconstruct, reject
    from npeff.ops.stream import check_device
    from npeff.store import open_decomposition
    from npeff.store import perturbation as results

    settings = settings or PerturbSettings()
    decomposition = decomposition if hasattr(decomposition, "H") else open_decomposition(decomposition)
    if getattr(decomposition, "method", "npeff") == "sae":
        raise InvalidArgumentError(f"{decomposition.path} is an SAE: its atoms live in activation space, not in "
                                   f"parameter space, so the model cannot be perturbed along them")
    store = open_store_for(decomposition, store)
    check_device(device)
    chosen = choose_components(decomposition.H.shape[0], components, sample, settings.seed)
    recorded = store.manifest.get("model") or {}
    loading = {} if model else {"gguf_file": recorded.get("gguf_file"), "revision": recorded.get("revision")}
    model = model or recorded.get("name")
    if not model:
        raise InvalidArgumentError(f"{store.path} records no model; give one with --model")
    projection = store.manifest["projection"]
    manifest = {"decomposition": str(decomposition.path), "store": store.url, "model": str(model),
                "components": chosen, "settings": settings.to_dict(), "projection": projection}
    records = (results.prepare_perturbation_dir(out, manifest, overwrite=overwrite,
                                               inputs=(store.location.local,))  # its home is inside the decomposition
               if out is not None else {})
    formulation = (store.manifest.get("pef_spec") or {}).get("formulation", "classifier")
    network, tokenizer = load_model_and_tokenizer(str(model), formulation, device=device, **loading)
    perturber = Perturber(network, tokenizer, store, settings, device=device)
    H = np.asarray(decomposition.H, dtype=np.float64)
    tops = top_indices(decomposition.W, min(settings.top, decomposition.W.shape[0]), components=chosen)
    log(f"perturbing {len(chosen)} components; baseline of {len(perturber.baseline)} examples; "
        + (f"{len(records)} done earlier" if records else "from the start"))
    fpc_settings = None
    for component in progress_bar(chosen, desc="perturb", unit="component", enabled=progress):
        if component in records:
            continue
        began = time.perf_counter()
        top = tops[component]
        record = {"component": component, "n_top": len(top)}
        if len(top) == 0:  # no example has a positive coefficient: nothing to compare
            record.update(kl_ratio=None, norm_ratio=None)
        else:
            others = np.delete(H, component, axis=0)
            h = reject(H[component], others, threshold=settings.threshold)
            solved = reconstruct(h, projection=projection, n=perturber.layout.n_total, mu=settings.mu, device=device,
                                 backend=backend, convention="paper",
                                 reference_norm=float(np.linalg.norm(H[component])) or None)
            fpc_settings = solved.settings
            u = solved.u
            record.update(perturber.evaluate(u, [int(i) for i in top]),
                          u_nonzero=int(torch.count_nonzero(u)), fpc_iterations=int(solved.iterations))
            if out is not None and save_directions:
                results.save_direction(Path(out), component, u.detach().cpu().numpy())
        record["seconds"] = time.perf_counter() - began
        records[component] = record
        if out is not None:
            results.write_record(Path(out), record)
    done = [records[c] for c in chosen if c in records]
    summary = {"kl_ratio_geomean": results.geometric_mean(r.get("kl_ratio") for r in done),
               "norm_ratio_geomean": results.geometric_mean(r.get("norm_ratio") for r in done),
               "n_components": len(done),
               "n_without_ratio": sum(1 for r in done if not (r.get("kl_ratio") or 0) > 0),
               "baseline_examples": len(perturber.baseline), "parameter_norm": perturber.theta_norm,
               "settings": settings.to_dict(), "reconstruction": fpc_settings, **manifest}
    if out is not None:
        results.write_results(Path(out), {r["component"]: r for r in done}, summary)
    return dict(summary, components=done)
