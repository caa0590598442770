"""Running an NPEFF decomposition: inputs checked, state initialised (or resumed from a checkpoint),
one pass over the store per step through a runner (:mod:`npeff.ops.stream`), progress, checkpoints,
and the finished decomposition written (:mod:`npeff.store.decomposition`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from npeff._config import resolve_config
from npeff.memory import require_memory
from npeff.errors import DecompositionError, IncompatibleStoresError, InvalidArgumentError
from npeff.ops.decomposition import algorithm
from npeff.ops.decomposition.config import DecomposeConfig
from npeff.ops.decomposition.normalization import Normalization, explain_non_finite, plan_normalization
from npeff.ops.stream import check_device, make_runner, ok_mask, parse_bytes, require_finalized
from npeff.ops.stream.cluster import cluster_label, resolve_cluster
from npeff.store import PefStore, open_store
from npeff.store.checkpoint import Checkpoint, checkpoint_path, load_checkpoint, save_checkpoint
from npeff.store.decomposition import (Decomposition, DecompositionManifest, open_decomposition,
                                       prepare_decomposition_dir, write_decomposition)
from npeff.store._files import refuse_resume_with_overwrite, removed_on_failure_if_new
from npeff.store._lock import output_lock
from npeff.store.provenance import new_provenance, now_iso

def decompose(store: PefStore | str | Path, n_components: int | None = None, *, out: str | Path | None = None,
              resume: bool = False, overwrite: bool = False, **options: Any) -> Decomposition | dict:
    """Run NPEFF on a store, streaming it from disk (paper, Algorithm 1); the arguments are those
    of :func:`run_decomposition`.

    With ``out``, the run holds the output's lock (one writer per output, see
    :mod:`npeff.store._lock`), and an output folder it created is removed again when the run
    fails before its first checkpoint (an argument error leaves nothing behind).
    """
    refuse_resume_with_overwrite(resume, overwrite)
    if out is None:
        return run_decomposition(store, n_components, resume=resume, overwrite=overwrite, **options)
    with output_lock(out, "decomposition"), removed_on_failure_if_new(
            out, keep=lambda path: checkpoint_path(path).is_file()):
        return run_decomposition(store, n_components, out=out, resume=resume, overwrite=overwrite, **options)


def run_decomposition(
    store: PefStore | str | Path,
    n_components: int | None = None,
    *,
    config: DecomposeConfig | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    memory_budget: int | str | None = None,
    device_memory_budget: int | str | None = None,
    cluster: str | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    command: str | None = None,
    **overrides: Any,
) -> Decomposition | dict:
    """Run NPEFF on a store, streaming it from disk (paper, Algorithm 1).

    Args:
        store: a :class:`PefStore` or its path.
        n_components: C (or give ``config``); further :class:`DecomposeConfig` fields as keywords.
        out: decomposition directory to write (``W.npy``, ``H.npy``, ``losses.npy``, manifest);
            without it, a dict with ``W``, ``H``, ``losses``, ``step_seconds``, ``normalization``
            and ``pef_norms`` is returned.
        device: torch device of the contractions.
        memory_budget: bytes (or ``"2GB"``) the pass may hold: resident chunks, W and the pieces in
            flight; the rest is re-read every iteration, loads overlapping compute. None: everything
            resident.
        device_memory_budget: bytes of the resident chunks kept on the compute device (default:
            all on a CPU; 90% of the free memory of a GPU, less W and the pieces in flight); the
            other resident chunks stay in host memory and are copied over each iteration.
        cluster: ``"local:N"`` (N workers in this process; a LocalCUDACluster with ``cuda``), a
            dask scheduler file, the address of a dask.distributed scheduler, or a
            ``distributed.Client`` (left open); None: ``$DASK_SCHEDULER_ADDRESS`` if set, else this
            process (see :func:`npeff.ops.stream.distributed.resolve_cluster`).
        checkpoint_every: write H, W, the step and the losses every K steps (needs ``out``).
        resume: continue from the checkpoint in ``out``.

    PEFs of a store that does not record them as normalised are scaled to unit
    ``||G_i^T G_i||_F`` as they are read (``normalize=True``, the default; see
    :mod:`~npeff.ops.decomposition.normalization`), their norms returned as ``pef_norms`` ``[m]``
    (``pef_norms.npy``); what was done is recorded as ``normalization`` in the manifest.

    Notes:
        Memory: ``W`` ``[m, C]`` (three times, with its update's temporaries) and ``H`` ``[C, d]``,
        plus the resident chunks and at most three streamed pieces of 32 MiB. Normalising reads
        the store once more, before the first step.
    """
    store = store if isinstance(store, PefStore) else open_store(store)
    require_finalized(store)
    cluster = resolve_cluster(cluster)  # --cluster, a Client, or $DASK_SCHEDULER_ADDRESS; None: here
    check_device(device, cluster)
    config = resolve_config(DecomposeConfig, config, "n_components", n_components, overrides)
    budget, device_budget = parse_bytes(memory_budget), parse_bytes(device_memory_budget)
    dtype = config.torch_dtype
    per_value = torch.empty((), dtype=dtype).element_size()
    require_memory(algorithm.W_FOOTPRINT * store.num_examples * config.n_components * per_value,
                   f"W [{store.num_examples}, {config.n_components}] with its update's temporaries",
                   "choose fewer components (-C)")
    mask = ok_mask(store, "cpu", dtype)
    if not bool(mask.any()):
        raise InvalidArgumentError(f"no example of {store.path} has status ok (all non-finite or skipped)")
    out_path = Path(out) if out is not None else None
    if checkpoint_every and out_path is None:
        raise InvalidArgumentError("checkpoints need an output directory (--out)")
    if out_path is not None:
        prepare_decomposition_dir(out_path, overwrite=overwrite, inputs=(store.location.local,))
    # a remote cluster's driver may lack the workers' device: the norms are computed here, on the CPU
    normalization = plan_normalization(store, config.normalize, mask=mask, device="cpu" if cluster else device)

    w0, h0 = algorithm.initial_state(config.n_components, store.num_examples, store.dim, mask, config.seed)
    start, losses = 0, []
    if resume:
        w0, h0, start, losses = _resumed_state(out_path, config, store)

    runner = make_runner(store, device=device, dtype=dtype, cluster=cluster, memory_budget=budget,
                         device_memory_budget=device_budget,
                         reserved_bytes=algorithm.W_FOOTPRINT * store.num_examples * config.n_components * per_value,
                         scale=normalization.factors)
    step_seconds: list[float] = []
    try:
        runner.start({"W": w0.to(dtype), "mask": mask})
        h = h0.to(runner.device, dtype)
        from npeff.progress import log, progress_bar

        plan = getattr(runner, "plan", None)  # a cluster's workers hold their shards whole
        if progress and plan is not None:
            log.info(plan.summary())
        with progress_bar(total=config.total_steps, initial=start, desc="decompose", unit="step",
                          enabled=progress) as bar:
            for step in range(start, config.total_steps):
                began = time.perf_counter()
                joint = step >= config.warmup_steps
                hht, m_matrix = algorithm.gram_terms(h)
                partials = runner.run_pass(algorithm.chunk_step, h, m_matrix, joint)
                loss = float(partials.loss)
                if not np.isfinite(loss):
                    raise DecompositionError(_non_finite_message(step, out_path, store, normalization, mask, dtype))
                h = algorithm.h_update(h, partials, hht, config.joint_lr if joint else config.warmup_lr)
                losses.append(loss)
                step_seconds.append(time.perf_counter() - began)
                bar.set_postfix(loss=f"{loss:.5g}", refresh=False)
                bar.update(1)
                if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < config.total_steps:
                    save_checkpoint(out_path, Checkpoint(
                        W=runner.gather("W").cpu().numpy(), H=h.cpu().numpy(), step=step + 1, losses=losses,
                        config=config.to_dict(), fingerprint=store.fingerprint, num_examples=store.num_examples))
        w = runner.gather("W")
    finally:
        runner.close()
    w, h = algorithm.normalise(w, h)
    result = {"W": w.cpu().numpy(), "H": h.cpu().numpy(), "losses": np.asarray(losses),
              "step_seconds": np.asarray(step_seconds), "normalization": normalization.record(),
              "pef_norms": normalization.norms}
    if out_path is None:
        return result
    manifest = DecompositionManifest(
        config=config.to_dict(), n_components=config.n_components, num_examples=store.num_examples,
        dim=store.dim, store=store.url, store_fingerprint=store.fingerprint,
        store_content_id=store.content_id, memory_budget=budget, cluster=cluster_label(cluster), device=device,
        final_loss=losses[-1] if losses else None,
        median_step_seconds=float(np.median(step_seconds)) if step_seconds else None,
        provenance=dict(new_provenance(command), finalized=now_iso()), normalization=normalization.record())
    write_decomposition(out_path, W=result["W"], H=result["H"], losses=result["losses"], manifest=manifest,
                        extra=None if normalization.norms is None else {"pef_norms": normalization.norms})
    return open_decomposition(out_path)


def _resumed_state(out_path: Path | None, config: DecomposeConfig, store: PefStore):
    """``(W, H, step, losses)`` of the checkpoint in ``out_path``, checked against the run."""
    if out_path is None or not checkpoint_path(out_path).is_file():
        raise InvalidArgumentError(f"nothing to resume: {out_path} has no checkpoint")
    saved = load_checkpoint(out_path)
    if saved.config != config.to_dict():
        raise InvalidArgumentError(f"the checkpoint in {out_path / 'checkpoint'} was made with other settings: "
                                   f"{saved.config}")
    if saved.fingerprint != store.fingerprint or saved.num_examples != store.num_examples:
        raise IncompatibleStoresError(f"the checkpoint in {out_path / 'checkpoint'} belongs to another store")
    return torch.from_numpy(saved.W).double(), torch.from_numpy(saved.H).double(), saved.step, list(saved.losses)


def _non_finite_message(step: int, out_path: Path | None, store: PefStore, normalization: Normalization,
                        mask: torch.Tensor, dtype: torch.dtype) -> str:
    """One line: the step, the kept checkpoint, and the cause the data show (non-finite or huge
    input values), else the learning rates."""
    cause, hint = explain_non_finite(store, normalization, mask, dtype)
    kept = out_path is not None and checkpoint_path(out_path).is_file()
    return (f"the loss became non-finite at step {step}" + (f": {cause}" if cause else "")
            + (f"; the last good checkpoint is kept in {out_path / 'checkpoint'}" if kept else "")
            + ("" if cause else f"; lower the learning rates{hint}"))
