"""``npeff decompose``, ``npeff fit`` and ``npeff sed``: NPEFF over a store, coefficients for new
data, and the sparse eigendecomposition of divergence gradients."""

from __future__ import annotations

import click

from npeff.cli._common import (COMPUTE_DTYPE, DEVICE, DIRECTORY, MEMORY_BUDGET, command_line, config_from_options,
                               config_options, echo_json, json_option, overwrite_option)
from npeff.ops.decomposition.config import DecomposeConfig
from npeff.ops.decomposition.sed.config import SedConfig


@click.command()
@click.argument("store", type=DIRECTORY)
@click.option("--out", required=True, type=DIRECTORY, help="Decomposition directory to write.")
@config_options(DecomposeConfig, names={"n_components": ("--n-components", "-C")})
@DEVICE
@click.option("--memory-budget", default=None,
              help="Bytes the run may hold (e.g. 2GB): resident chunks, W and the pieces in flight; the rest "
                   "streams from disk each step.")
@click.option("--device-memory-budget", default=None,
              help="Of the resident chunks, bytes kept on the GPU (default: 90% of its free memory); "
                   "the rest stays in host RAM and is copied over each step.")
@click.option("--cluster", default=None,
              help="local:N (N dask workers in this process; with --device cuda, a LocalCUDACluster, "
                   "one process per GPU), a scheduler file (from dask scheduler --scheduler-file F: an existing "
                   "file, or a path ending in .json) or the address of a running dask.distributed scheduler "
                   "(tcp://host:8786). Default: $DASK_SCHEDULER_ADDRESS if set, else this process. The workers "
                   "must run this npeff version; if one is lost, rerun with --resume to continue from the last "
                   "--checkpoint-every checkpoint.")
@click.option("--checkpoint-every", default=0, show_default=True, type=click.IntRange(0),
              help="Write H, W and the step every K steps (0: never).")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
@overwrite_option("an existing decomposition at --out")
@json_option("a summary (path, examples, components, steps, first and final loss, seconds)")
def decompose(store, out, device, memory_budget, device_memory_budget, cluster, checkpoint_every, resume, overwrite,
              as_json, **settings):
    """Decompose the PEFs of STORE into C components (NPEFF, paper Algorithm 1).

    One pass over the store per step; data larger than memory streams from disk. Writes W [m, C],
    H [C, d] and the loss of every step to --out. PEFs that the store does not record as
    normalised (written with create_store) are scaled to unit Frobenius norm as they are read,
    their norms written as pef_norms.npy; --no-normalize decomposes them as stored.

    \b
    Example:
      npeff decompose sst2.store --out sst2.npeff -C 512 --memory-budget 8GB
    """
    import time

    from npeff.ops import decompose as run

    began = time.perf_counter()
    result = run(store, config=config_from_options(DecomposeConfig, settings), out=out, device=device,
                 memory_budget=memory_budget, device_memory_budget=device_memory_budget, cluster=cluster,
                 checkpoint_every=checkpoint_every, resume=resume, overwrite=overwrite, progress=True,
                 command=command_line())
    losses = result.losses
    if as_json:
        echo_json({"path": str(result.path), "store": store, "num_examples": int(result.W.shape[0]),
                   "n_components": int(result.H.shape[0]), "dim": int(result.H.shape[1]), "steps": len(losses),
                   "initial_loss": float(losses[0]), "final_loss": float(losses[-1]),
                   "median_step_seconds": result.meta.median_step_seconds,
                   "seconds": round(time.perf_counter() - began, 3)})
        return
    click.echo(f"decomposed {result.W.shape[0]:,} examples into {result.H.shape[0]} components; "
               f"loss {losses[0]:.6g} -> {losses[-1]:.6g}; wrote {result.path}")


@click.command()
@click.argument("decomposition", type=DIRECTORY)
@click.argument("store", type=DIRECTORY)
@click.option("--out", required=True, type=DIRECTORY, help="Directory for the coefficients (W.npy).")
@click.option("--steps", default=100, show_default=True, type=int, help="Multiplicative W updates (>= 1).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the initial coefficients.")
@DEVICE
@COMPUTE_DTYPE
@MEMORY_BUDGET
@click.option("--normalize/--no-normalize", default=True, show_default=True,
              help="Scale each PEF to unit Frobenius norm when the store's are not normalised (a store from "
                   "create_store); --no-normalize uses them as stored.")
@overwrite_option("existing coefficients at --out")
@json_option("a summary (path, examples, components, steps, seconds)")
def fit(decomposition, store, out, steps, seed, device, dtype, memory_budget, normalize, overwrite, as_json):
    """Fit coefficients of DECOMPOSITION's components to the PEFs of STORE (H fixed).

    STORE must share the projection and parameter layout of the decomposition's store.
    """
    import time

    from npeff.ops import fit_coefficients

    began = time.perf_counter()
    coefficients = fit_coefficients(decomposition, store, out=out, steps=steps, seed=seed, device=device,
                                    dtype=dtype, memory_budget=memory_budget, overwrite=overwrite,
                                    normalize=normalize, progress=True, command=command_line())
    if as_json:
        echo_json({"path": out, "decomposition": decomposition, "store": store,
                   "num_examples": int(coefficients.shape[0]), "n_components": int(coefficients.shape[1]),
                   "steps": steps, "seconds": round(time.perf_counter() - began, 3)})
        return
    click.echo(f"fitted coefficients [{coefficients.shape[0]:,}, {coefficients.shape[1]}] to {out}")


@click.command()
@click.argument("store", type=DIRECTORY)
@click.option("--out", required=True, type=DIRECTORY, help="Directory for the directions (a decomposition).")
@config_options(SedConfig, names={"n_components": ("--n-components", "-C")})
@DEVICE
@MEMORY_BUDGET
@overwrite_option("an existing decomposition at --out")
def sed(store, out, device, memory_budget, overwrite, **settings):
    """Sparse eigendecomposition of the divergence gradients of STORE into C directions.

    STORE holds one gradient g per example of the model's divergence from an uninformative
    baseline (npeff build --divergence-gradient). Adam on streamed minibatches learns U [C, d]
    lowering the mean of ||g - g Uᵀ U||² + λ ||g Uᵀ||₁: every gradient rebuilt from few directions.
    The result reads like a decomposition: U as H and the codes |g Uᵀ| as W, so top-examples,
    tunings, compare, report and perturb work on it unchanged.

    \b
    Example:
      npeff build ./model --data sst2.jsonl --task sst2.yaml --divergence-gradient --out sst2.div
      npeff sed sst2.div --out sst2.sed -C 64 --l1 0.1
    """
    from npeff.ops.decomposition.sed import sparse_eigendecomposition

    result = sparse_eigendecomposition(store, config=config_from_options(SedConfig, settings), out=out, device=device,
                                       memory_budget=memory_budget, overwrite=overwrite, progress=True,
                                       command=command_line())
    details = result.manifest["details"]
    click.echo(f"learned {result.H.shape[0]} directions ({details['directions']}) in {len(result.losses)} steps "
               f"({details['steps_per_second']:.1f} steps/s); reconstruction error {details['reconstruction']:.4g}, "
               f"L1 {details['sparsity']:.4g}; wrote {result.path}")


COMMANDS = [decompose, fit, sed]
