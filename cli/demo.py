"""``npeff demo``: the main job end to end on a planted task; ``npeff check-projection``: the
seeded projection's promises on random data."""

from __future__ import annotations

import functools

import click

from npeff.cli._common import DIRECTORY, overwrite_option, percent, ratio


@click.command("check-projection")
@click.option("--log2-n", default=20, show_default=True, type=click.IntRange(8, 30),
              help="Length of the vectors to project is 2**LOG2_N.")
@click.option("--dim", "-d", default=1024, show_default=True, type=int,
              help="Projected dimension d (a multiple of 32).")
@click.option("--rows", "-r", default=32, show_default=True, type=click.IntRange(2, 4096),
              help="Number of random vectors projected in one call.")
@click.option("--seed", default=0, show_default=True, type=int, help="Projection seed.")
@click.option("--backend", default="auto", show_default=True,
              type=click.Choice(["auto", "cpu", "cuda"]), help="Where the kernel runs.")
def check_projection(log2_n: int, dim: int, rows: int, seed: int, backend: str) -> None:
    """Project random vectors with the seeded sparse projection and check what it promises.

    Prints throughput, how well inner products and norms survive the projection (relative to the
    Johnson-Lindenstrauss scale 1/sqrt(d)), block additivity and the adjoint identity.
    """
    from npeff.memory import require_memory
    from npeff.ops.demo.projection import projection_demo

    require_memory(3 * rows * 2**log2_n * 4, f"{rows} random vectors of length 2**{log2_n} (float32, with "
                   f"their copies)", "choose fewer --rows or a smaller --log2-n")
    report = projection_demo(n=2**log2_n, d=dim, rows=rows, seed=seed, backend=backend)
    click.echo(f"projected {rows} vectors of length {report['n']:,} to d={dim} "
               f"on {report['backend']} in {report['seconds']:.3f} s "
               f"({report['gb_per_s']:.2f} GB/s of input)")
    click.echo(f"  norm ratio ||Ax||/||x||: mean {report['norm_ratio_mean']:.4f}, "
               f"std {report['norm_ratio_std']:.4f} (expected about 1 and <~ "
               f"{report['expected_std']:.4f})")
    click.echo(f"  cosine error of pairs: max {report['cosine_error_max']:.4f}")
    click.echo(f"  block additivity error: {report['additivity_error']:.2e}")
    click.echo(f"  adjoint identity <Ax,y> - <x,A^T y>: {report['adjoint_error']:.2e}")
    status = "OK" if report["ok"] else "FAILED"
    click.echo(f"projection check {status}")
    if not report["ok"]:
        raise SystemExit(1)


@click.command()
@click.option("--out", default="npeff-demo", show_default=True, type=DIRECTORY,
              help="Folder for everything the demo makes (model, data, store, decomposition, report).")
@overwrite_option("a previous demo in --out")
@click.option("--quick", is_flag=True, help="A smaller run (a few seconds) with fewer examples and components.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the data, model and decomposition; the figures depend on it, not on the machine's "
                   "thread counts (torch and numba run on one thread during the demo).")
def demo(out: str, overwrite: bool, quick: bool, seed: int) -> None:
    """Run the whole toolkit on a planted task, offline, in a few minutes (--quick: about a minute).

    Generates a labelled sentiment dataset from four planted strategies (a sentiment word, a
    negation that flips it, a contrast where the clause after "but" decides, a topic rule when
    there is no sentiment word; intensifiers and topics are sprinkled over all), trains a tiny
    GPT-2 classifier on it, builds the PEF store, decomposes it, perturbs the model along each
    component, runs the paper's baselines (G-NPEFF, gradient clustering, a TopK SAE) and the sparse
    eigendecomposition of divergence gradients (SED) on the same sentences, writes report.html, and prints how well the components align with the planted
    strategies, beside the baselines. Exits 1 when fewer than half of the
    analysed components align. The same --seed prints the same figures whatever the thread
    counts; between CPUs only the SAE's and SED's figures move a little (README, "The demo").
    """
    from npeff.ops.demo.pipeline import DemoSettings, run_demo

    settings = DemoSettings.quick(seed=seed) if quick else DemoSettings(seed=seed)
    summary = run_demo(out, settings, overwrite=overwrite, progress=True, log=click.echo)
    _print_summary(summary)
    if summary["alignment"]["aligned_fraction"] < 0.5:
        click.secho("fewer than half of the components align with a planted strategy", fg="red", err=True)
        raise SystemExit(1)


def _print_summary(summary: dict) -> None:
    from collections import Counter

    settings, aligned, tunings = summary["settings"], summary["alignment"], summary["tunings"]
    out = summary["out"]
    click.echo("")
    click.secho(f"npeff demo finished in {summary['timings']['total_s']:.0f} s; everything is in {out}/", bold=True)
    click.echo(f"  model          {out}/model  (tiny GPT-2 classifier; accuracy {summary['analysis_accuracy']:.1%} "
               "on the analysed sentences)")
    click.echo(f"  PEF store      {summary['store']}  ({settings['pef_examples']:,} examples, d={settings['dim']})")
    first, last = summary["decomposition_losses"]
    click.echo(f"  decomposition  {summary['decomposition']}  ({settings['n_components']} components, "
               f"loss {first:.4g} -> {last:.4g})")
    click.secho(f"  report         {summary['report']}  <- open this in a browser", bold=True)
    threshold = int(round(aligned["threshold"] * aligned["top"]))
    click.echo("")
    click.echo(f"alignment with the planted strategies ({aligned['n_analysed']} components analysed):")
    click.echo(f"  {aligned['aligned_fraction']:.1%} of components have >= {threshold} of their top {aligned['top']} "
               f"examples from one strategy (random sets of examples: {aligned['chance_aligned_fraction']:.2%})")
    click.echo(f"  mean purity of the top {aligned['top']}: {aligned['mean_purity']:.2f} "
               f"(random: {aligned['chance_mean_purity']:.2f})")
    per_strategy = Counter(c["strategy"] for c in aligned["components"] if c["purity"] >= aligned["threshold"])
    click.echo("  components per strategy: " + ", ".join(f"{name} {count}" for name, count in sorted(per_strategy.items())))
    pct = functools.partial(percent, width=0)
    click.echo(f"tunings: prediction-tuned {pct(tunings['prediction_tuned_pct'])}, label-tuned "
               f"{pct(tunings['label_tuned_pct'])}, LnP-tuned {pct(tunings['lnp_tuned_pct'])}")
    perturbation = summary["perturbation"]
    click.echo(f"perturbations ({perturbation['n_components']} components): KL ratio (geometric mean) "
               f"{ratio(perturbation['kl_ratio_geomean'])}, norm ratio {ratio(perturbation['norm_ratio_geomean'])}")
    _print_comparison(summary.get("comparison") or [])
    click.echo("")
    click.echo("look closer:")
    click.echo(f"  npeff top-examples {summary['decomposition']} -k 5 --component 0")
    click.echo(f"  npeff tunings {summary['decomposition']} {out}/gnpeff {out}/clusters {out}/sae {out}/sed")
    click.echo(f"  npeff perturb {summary['decomposition']} --component 0 --out {out}/perturb-0")
    click.echo(f"  npeff info {summary['store']}")


def _print_comparison(rows: list[dict]) -> None:
    """Table 1's layout over the demo's methods, with their alignment to the planted strategies."""
    if not rows:
        return
    pct = functools.partial(percent, width=6)
    click.echo("")
    click.echo("methods on the same examples (Table 1's layout; clf: the tuning classifier of section 3.3):")
    click.echo(f"  {'method':<20} {'analysed':>8} {'Pred':>7} {'Label':>7} {'LnP':>7} {'clf acc':>8} {'agree':>7} "
               f"{'aligned':>8} {'purity':>6}")
    for row in rows:
        tunings, classifier, aligned = row["tunings"], row["classifier"] or {}, row["alignment"]
        accuracy, agreement = classifier.get("accuracy"), classifier.get("agreement_with_model")
        click.echo(f"  {row['name']:<20} {tunings['n_included']:>4}/{tunings['n_components']:<3} "
                   f"{pct(tunings['prediction_tuned_pct'])} {pct(tunings['label_tuned_pct'])} "
                   f"{pct(tunings['lnp_tuned_pct'])} {percent(None if accuracy is None else 100 * accuracy, 7)} "
                   f"{pct(None if agreement is None else 100 * agreement)} "
                   f"{percent(100 * aligned['aligned_fraction'], 7)} {aligned['mean_purity']:>6.2f}")


COMMANDS = [demo, check_projection]
