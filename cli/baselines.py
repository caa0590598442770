"""``npeff cluster`` and ``npeff sae``: the paper's baselines over the same stores (gradient
clustering and a TopK sparse autoencoder), written as decompositions the analysis commands read."""

from __future__ import annotations

import click

from npeff.cli._common import DEVICE, DIRECTORY, MEMORY_BUDGET, command_line, config_from_options, config_options, \
    overwrite_option
from npeff.ops.baselines.config import ClusterConfig, SaeConfig


@click.command("cluster")
@click.argument("store", type=DIRECTORY)
@click.option("--out", required=True, type=DIRECTORY, help="Directory for the clustering (a decomposition).")
@config_options(ClusterConfig, names={"n_clusters": ("-k", "--n-clusters")})
@DEVICE
@MEMORY_BUDGET
@click.option("--cluster", "dask_cluster", default=None,
              help="local:N (N dask workers in this process), a scheduler file (from dask scheduler "
                   "--scheduler-file F: an existing file, or a path ending in .json) or the address of a running "
                   "dask.distributed scheduler (tcp://host:8786). Default: $DASK_SCHEDULER_ADDRESS if set, else "
                   "this process. The workers must run this npeff version.")
@overwrite_option("an existing clustering at --out")
def cluster_command(store, out, device, memory_budget, dask_cluster, overwrite, **settings):
    """Gradient clustering: k-means on the unit-normalised gradients of STORE (paper, section 3.1).

    STORE is a gradient store (npeff build --gradient: the projected gradient of log p of the
    predicted class). k-means++ starts from a seeded sample; each Lloyd iteration is one pass over
    the store (out of core; local or on a dask cluster). The result reads like a decomposition:
    the centroids as H, and W scoring each example's membership by its proximity to its centroid,
    so top-examples, tunings, compare, report and perturb work on it unchanged.

    \b
    Example:
      npeff cluster sst2.grad --out sst2.clusters -k 512
      npeff tunings sst2.clusters sst2.npeff
    """
    from npeff.ops.baselines import cluster
    from npeff.ops.baselines.gradient_clustering import sizes_summary

    result = cluster(store, config=config_from_options(ClusterConfig, settings), out=out, device=device,
                     memory_budget=memory_budget, cluster=dask_cluster, overwrite=overwrite, progress=True,
                     command=command_line())
    details = result.manifest["details"]
    labels = result.array("labels")
    import numpy as np

    sizes = np.bincount(labels[labels >= 0], minlength=result.H.shape[0])
    state = "converged" if details["converged"] else "stopped at --iterations, not converged"
    click.echo(f"clustered {int((labels >= 0).sum()):,} examples: {sizes_summary(sizes)}; {details['iterations']} "
               f"Lloyd passes ({state}), inertia {result.losses[-1]:.6g}; wrote {result.path}")


@click.command()
@click.argument("store", type=DIRECTORY)
@click.option("--out", required=True, type=DIRECTORY, help="Directory for the SAE (a decomposition).")
@config_options(SaeConfig, names={"k": ("-k",)})
@DEVICE
@MEMORY_BUDGET
@overwrite_option("an existing SAE at --out")
def sae(store, out, device, memory_budget, overwrite, **settings):
    """A TopK sparse autoencoder on the activations of STORE (paper, appendix G; Gao et al. 2024).

    STORE is an activation store (npeff build --activations). Encoder rows and decoder columns
    are kept at unit norm (gradients projected onto that manifold before Adam), the decoder starts
    as the encoder's transpose, and minibatches stream from the store. The result reads like a
    decomposition: the decoder atoms as H and every example's latent activations as W.

    \b
    Example:
      npeff build ./model --data sst2.jsonl --task sst2.yaml --activations --out sst2.acts
      npeff sae sst2.acts --out sst2.sae --n-latents 512 -k 32
    """
    from npeff.ops.baselines import train_sae

    result = train_sae(store, config=config_from_options(SaeConfig, settings), out=out, device=device,
                       memory_budget=memory_budget, overwrite=overwrite, progress=True, command=command_line())
    details = result.manifest["details"]
    click.echo(f"trained {result.H.shape[0]} latents ({details['dead_latents']} dead) for {len(result.losses)} steps "
               f"({details['steps_per_second']:.1f} steps/s); reconstruction error {result.losses[-1]:.4g}; "
               f"wrote {result.path}")


COMMANDS = [cluster_command, sae]
