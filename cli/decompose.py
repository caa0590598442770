"""``npeff decompose`` and ``npeff fit``: NPEFF over a store, and coefficients for new data."""

from __future__ import annotations

import click

from npeff.cli.main_helpers import command_line

HELP = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
DIRECTORY = click.Path(file_okay=False)


@click.command(context_settings=HELP)
@click.argument("store", type=DIRECTORY)
@click.option("--out", required=True, type=DIRECTORY, help="Decomposition directory to write.")
@click.option("--n-components", "-C", required=True, type=int, help="Number of components C.")
@click.option("--warmup-steps", default=1000, show_default=True, type=int, help="H-only steps (W frozen).")
@click.option("--joint-steps", default=3000, show_default=True, type=int, help="Steps updating W and H.")
@click.option("--warmup-lr", default=1e-5, show_default=True, type=float, help="Learning rate of warm-up steps.")
@click.option("--joint-lr", default=3e-4, show_default=True, type=float, help="Learning rate of joint steps.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the initialisation.")
@click.option("--device", default="cpu", show_default=True, help="Torch device of the contractions.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--memory-budget", default=None,
              help="Bytes of chunks kept resident (e.g. 2GB); the rest streams from disk each step.")
@click.option("--device-memory-budget", default=None,
              help="Of the resident chunks, bytes kept on the GPU (default: 90% of its free memory); "
                   "the rest stays in host RAM and is copied over each step.")
@click.option("--cluster", default=None,
              help="local:N (N dask workers in this process; with --device cuda, a LocalCUDACluster, "
                   "one process per GPU) or the address of a running dask.distributed scheduler.")
@click.option("--checkpoint-every", default=0, show_default=True, type=click.IntRange(0),
              help="Write H, W and the step every K steps (0: never).")
@click.option("--resume", is_flag=True, help="Continue from the checkpoint in --out.")
@click.option("--overwrite", is_flag=True, help="Replace an existing decomposition at --out.")
def decompose(store, out, n_components, warmup_steps, joint_steps, warmup_lr, joint_lr, seed, device, dtype,
              memory_budget, device_memory_budget, cluster, checkpoint_every, resume, overwrite):
    """Decompose the PEFs of STORE into C components (NPEFF, paper Algorithm 1).

    One pass over the store per step; data larger than memory streams from disk. Writes W [m, C],
    H [C, d] and the loss of every step to --out.
    """
    from npeff.ops import DecomposeConfig
    from npeff.ops import decompose as run

    config = DecomposeConfig(n_components=n_components, warmup_steps=warmup_steps, joint_steps=joint_steps,
                             warmup_lr=warmup_lr, joint_lr=joint_lr, seed=seed, dtype=dtype)
    result = run(store, config=config, out=out, device=device, memory_budget=memory_budget,
                 device_memory_budget=device_memory_budget, cluster=cluster,
                 checkpoint_every=checkpoint_every, resume=resume, overwrite=overwrite, progress=True,
                 command=command_line())
    losses = result.losses
    click.echo(f"decomposed {result.W.shape[0]:,} examples into {result.H.shape[0]} components; "
               f"loss {losses[0]:.6g} -> {losses[-1]:.6g}; wrote {result.path}")


@click.command(context_settings=HELP)
@click.argument("decomposition", type=DIRECTORY)
@click.argument("store", type=DIRECTORY)
@click.option("--out", required=True, type=DIRECTORY, help="Directory for the coefficients (W.npy).")
@click.option("--steps", default=100, show_default=True, type=int, help="Multiplicative W updates.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--memory-budget", default=None, help="Bytes of chunks kept resident (e.g. 2GB).")
@click.option("--overwrite", is_flag=True, help="Replace existing coefficients at --out.")
def fit(decomposition, store, out, steps, seed, device, dtype, memory_budget, overwrite):
    """Fit coefficients of DECOMPOSITION's components to the PEFs of STORE (H fixed).

    STORE must share the projection and parameter layout of the decomposition's store.
    """
    from npeff.ops import fit_coefficients

    coefficients = fit_coefficients(decomposition, store, out=out, steps=steps, seed=seed, device=device,
                                    dtype=dtype, memory_budget=memory_budget, overwrite=overwrite,
                                    progress=True, command=command_line())
    click.echo(f"fitted coefficients [{coefficients.shape[0]:,}, {coefficients.shape[1]}] to {out}")
