"""``npeff perturb``: move the model along components and measure how selectively their top
examples' predictions change (KL and norm ratios, paper Table 2)."""

from __future__ import annotations

import click

from npeff.cli._common import (DEVICE, DIRECTORY, config_from_options, config_options, echo_json, overwrite_option,
                               ratio)
from npeff.ops.perturb.settings import PerturbSettings


@click.command()
@click.argument("decomposition", type=DIRECTORY)
@click.option("--out", default=None, type=DIRECTORY,
              help="Directory for the results, resumable (default: DECOMPOSITION/perturbation, where npeff report "
                   "finds them).")
@click.option("--store", default=None, type=DIRECTORY,
              help="The PEF store the decomposition was computed from (default: the path it records).")
@click.option("--model", default=None, help="The model's folder or hub name (default: the one the store records).")
@click.option("--component", "components", multiple=True, type=int,
              help="Perturb this component (repeatable; default: all).")
@click.option("--sample", default=None, type=int, help="Perturb this many components drawn at random (--seed).")
@config_options(PerturbSettings)
@DEVICE
@click.option("--save-directions", is_flag=True, help="Keep each reconstructed direction (sparse) in OUT/directions.")
@overwrite_option("earlier results at --out made with other settings")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def perturb(decomposition, out, store, model, components, sample, device, save_directions, overwrite, as_json,
            **settings):
    """Perturb the model along DECOMPOSITION's components and measure the KL ratios.

    Each component's vector is orthogonally rejected from the other components, reconstructed in
    parameter space by compressed sensing (FPC), and the model is moved by +/- a magnitude along it.
    The KL ratio is the mean KL divergence of the perturbed from the original predictions on the
    component's top examples over the same on random baseline examples (the larger of the two
    signs); the norm ratio compares their mean PEF norms. A KL ratio well above the norm ratio
    says the component is a processing strategy of the model that can be disrupted selectively.

    \b
    Example:
      npeff perturb sst2.npeff --out sst2.perturb --sample 32 --top 16 --baseline 1000
    """
    from pathlib import Path

    from npeff.ops.perturb import perturb as run

    out = out or str(Path(decomposition) / "perturbation")
    summary = run(decomposition, store=store, model=model, out=out, components=list(components), sample=sample,
                  settings=config_from_options(PerturbSettings, settings), device=device,
                  save_directions=save_directions, overwrite=overwrite, progress=True,
                  log=lambda message: click.echo(message, err=True))
    if as_json:
        echo_json(dict(summary, components=[record["component"] for record in summary["components"]]))
        return
    click.echo(f"perturbed {summary['n_components']} components: KL ratio (geometric mean) "
               f"{ratio(summary['kl_ratio_geomean'])}, norm ratio {ratio(summary['norm_ratio_geomean'])}; wrote {out}")


COMMANDS = [perturb]
