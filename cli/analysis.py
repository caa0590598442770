"""``npeff top-examples``, ``npeff tunings``, ``npeff compare``, ``npeff report`` and ``npeff spectrum``.

Every command that takes a DECOMPOSITION also takes a coefficients directory written by
``npeff fit`` (W from it, H from the decomposition it was fitted with, the store it was fitted on).
"""

from __future__ import annotations

import textwrap

import click

from npeff.cli._common import DEVICE, DIRECTORY, echo_json, overwrite_option, percent

#: the effective support's threshold (see npeff.ops.analysis.coefficients); kept in step with
#: DEFAULT_SUPPORT_THRESHOLD there, without importing it when the CLI starts
SUPPORT_THRESHOLD = 1e-6

STORE_OPTION = click.option(
    "--store", default=None, type=DIRECTORY,
    help="The PEF store the decomposition was computed from, or the coefficients were fitted on (default: the "
         "path it records).")

SUPPORT_OPTION = click.option(
    "--support-threshold", default=SUPPORT_THRESHOLD, show_default=True, type=float,
    help="Effective support: a coefficient counts as non-zero when above this fraction of its component's "
         "largest (0: every positive coefficient).")


def _open(path: str):
    """A decomposition (or a baseline's output) or coefficients from npeff fit, by its manifest."""
    from npeff.ops.analysis import open_analysable

    return open_analysable(path)


def _checked_support(value: float) -> float:
    from npeff.ops.analysis.coefficients import check_support_threshold

    return check_support_threshold(value)


@click.command("top-examples")
@click.argument("decomposition", type=DIRECTORY)
@STORE_OPTION
@click.option("-k", "k", default=16, show_default=True, type=int, help="Examples per component.")
@click.option("--component", "components", multiple=True, type=int,
              help="Only this component (repeatable; default: all).")
@SUPPORT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def top_examples(decomposition, store, k, components, support_threshold, as_json):
    """Show each component's top-k examples by coefficient.

    DECOMPOSITION is a decomposition or the coefficients npeff fit wrote (held-out data). Only
    examples in a component's effective support are listed (coefficients above --support-threshold
    times the component's largest); equal coefficients go by example index. Each row has the
    coefficient, the example's id, gold label, the model's prediction and text.
    """
    from npeff.ops import analysis

    support_threshold = _checked_support(support_threshold)
    decomp = _open(decomposition)
    opened = analysis.open_store_for(decomp, store)
    result = analysis.top_examples(decomp, opened, k=k, components=list(components),
                                   support_threshold=support_threshold)
    if as_json:
        echo_json(result)
        return
    names = analysis.label_names(opened)
    for entry in result:
        click.secho(f"component {entry['component']}: {entry['n_nonzero']:,} examples with non-zero coefficient, "
                    f"{entry['n_effective']:,} in the effective support (> {support_threshold:g} x the largest)",
                    bold=True)
        if not entry["examples"]:
            click.echo("  (no example is in the effective support)")
        for e in entry["examples"]:
            label = analysis.label_name(e["label"], names)
            prediction = analysis.label_name(e["prediction"], names)
            text = textwrap.shorten(e["text"] or "", width=90, placeholder="...")
            click.echo(f"  {e['rank']:>3}  #{e['example_index']:<7} {e['coefficient']:10.4g}  "
                       f"label {label:<10} pred {prediction:<10} {text}")


@click.command()
@click.argument("decompositions", nargs=-1, required=True, type=DIRECTORY)
@click.option("--store", default=None, type=DIRECTORY,
              help="With one DECOMPOSITION: the store it was computed from (default: the path it records).")
@SUPPORT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON (summary and one record per component).")
def tunings(decompositions, store, support_threshold, as_json):
    """Which components are prediction-, label- and LnP-tuned (paper section 3, Table 1).

    A DECOMPOSITION may also be the coefficients npeff fit wrote (the tunings on held-out data).
    A component is prediction-tuned (label-tuned) when all of its top 16 examples share one
    prediction (gold label); LnP means label- but not prediction-tuned. Components with fewer than
    16 examples in their effective support (coefficients above --support-threshold times the
    component's largest; clusters of fewer than 16 members) are excluded and counted.
    Percentages are over the components analysed. The tuning classifier (section 3.3): each
    component votes for a label held by at least 75% of its top 16 examples, and an example is
    classified by its coefficients' weighted votes; its accuracy and its agreement with the
    model's predictions are shown.

    Given several decompositions (NPEFF, G-NPEFF, npeff cluster, npeff sae outputs over the same
    examples), one row per method, side by side as in Table 1.

    \b
    Example:
      npeff tunings sst2.npeff sst2.gnpeff sst2.clusters sst2.sae
    """
    from npeff.errors import InvalidArgumentError

    if store is not None and len(decompositions) > 1:
        raise InvalidArgumentError("--store applies to one decomposition; with several, each uses the store "
                                   "it records")
    from npeff.ops import analysis

    support_threshold = _checked_support(support_threshold)
    rows = [analysis.method_row(path, store, support_threshold=support_threshold) for path in decompositions]
    if as_json:
        payload = [dict(row["tunings"].to_dict(), name=row["name"], method=row["method"],
                        classifier=row["classifier"]) for row in rows]
        echo_json(payload[0] if len(payload) == 1 else {"methods": payload})
        return
    if len(rows) > 1:
        _echo_method_table(rows)
        return
    row = rows[0]
    result, names = row["tunings"], row["label_names"]
    summary = result.summary()
    click.echo(f"{summary['n_included']} of {summary['n_components']} components analysed "
               f"({summary['n_excluded']} excluded: fewer than {summary['top']} examples in the effective support, "
               f"coefficients > {summary['support_threshold']:g} x the component's largest)")
    click.echo(f"  prediction-tuned {percent(summary['prediction_tuned_pct'])}")
    click.echo(f"  label-tuned      {percent(summary['label_tuned_pct'])}"
               + ("" if summary["labels_available"] else "   (the store has no gold labels)"))
    click.echo(f"  LnP-tuned        {percent(summary['lnp_tuned_pct'])}")
    if row["classifier"] is not None:
        classifier = row["classifier"]
        click.echo(f"  tuning classifier: accuracy {_share(classifier['accuracy'])}, agreement with the model "
                   f"{_share(classifier['agreement_with_model'])} ({classifier['n_voting_components']} components "
                   f"vote; {_share(classifier['abstained'])} of examples without a vote)")
    for c in result.components:
        if c.prediction_tuned or c.label_tuned:
            flags = ", ".join(
                part for part in (f"prediction {analysis.label_name(c.prediction, names)}" if c.prediction_tuned else "",
                                  f"label {analysis.label_name(c.label, names)}" if c.label_tuned else "",
                                  "LnP" if c.lnp else "") if part)
            click.echo(f"  component {c.component:>4}: {flags}")


def _share(value: float | None) -> str:
    return percent(None if value is None else 100.0 * value).strip()


def _echo_method_table(rows: list[dict]) -> None:
    """Table 1's layout: one row per method, Pred / Label / LnP side by side, and the classifier."""
    def label(row: dict) -> str:
        return f"{row['name']} ({row['method']}{', fitted' if row.get('kind') == 'coefficients' else ''})"

    width = max(len(label(row)) for row in rows)
    click.echo(f"{'method':<{width}}  {'C':>5} {'analysed':>8}  {'Pred':>6} {'Label':>6} {'LnP':>6}  "
               f"{'clf acc':>7} {'agree':>6}")
    for row in rows:
        summary, classifier = row["tunings"].summary(), row["classifier"] or {}
        click.echo(f"{label(row):<{width}}  {summary['n_components']:>5} "
                   f"{summary['n_included']:>8}  {percent(summary['prediction_tuned_pct'], 6)} "
                   f"{percent(summary['label_tuned_pct'], 6)} {percent(summary['lnp_tuned_pct'], 6)}  "
                   f"{percent(None if classifier.get('accuracy') is None else 100 * classifier['accuracy'], 7)} "
                   f"{percent(None if classifier.get('agreement_with_model') is None else 100 * classifier['agreement_with_model'], 6)}")


@click.command()
@click.argument("decomposition_a", type=DIRECTORY)
@click.argument("decomposition_b", type=DIRECTORY)
@click.option("--store", default=None, type=DIRECTORY,
              help="The store both were computed from, for the tunings preserved (default: the one A records); "
                   "of different stores, A's.")
@click.option("--store-b", default=None, type=DIRECTORY,
              help="B's store when it is another one over the same examples (default: the one B records).")
@SUPPORT_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON, with the full split map.")
def compare(decomposition_a, decomposition_b, store, store_b, support_threshold, as_json):
    """Compare two decompositions of the same examples (paper section 4, appendix F, Figure 2).

    Of one store, components are compared as they are. Of two stores over the same examples
    (PEFs computed another way, e.g. another --eps or --svd-rank: the ablation of Figure 2),
    examples are matched by id (the store's source_id); stores whose ids differ are refused.
    Either side may be coefficients written by npeff fit.

    The similarity score is the mean, over all components of both, of the best cosine similarity of
    a component's coefficient vector with a component of the other. The split map sends each
    component of the finer decomposition to its most similar coarse one; the fraction of tunings
    preserved counts, among fine components mapped to prediction-tuned coarse ones, those
    prediction-tuned to the same prediction.
    """
    from npeff.ops import analysis

    support_threshold = _checked_support(support_threshold)
    result = analysis.compare(_open(decomposition_a), _open(decomposition_b), store, store_b=store_b,
                              support_threshold=support_threshold)
    if as_json:
        echo_json(result)
        return
    split = result["split_map"]
    click.echo(f"similarity score {result['similarity']:.4f} "
               f"(A: {result['n_components_a']} components, B: {result['n_components_b']})")
    if result["examples_matched_by"] == "example id":
        click.echo(f"{result['n_examples']:,} examples matched by id between {result['store_a']} and "
                   f"{result['store_b']}")
    click.echo(f"split map: {split['coarse'].upper()} is coarse; "
               f"{split['coarse_matched_fraction']:.1%} of its components have at least one split in "
               f"{split['fine'].upper()}")
    if split["tunings_preserved"] is not None:
        click.echo(f"tunings preserved: {split['tunings_preserved']:.1%} of {split['n_tuned_matches']} matches "
                   "of prediction-tuned coarse components")
    else:
        click.echo("tunings preserved: n/a (no prediction-tuned coarse component, or no store to read predictions)")
    for coarse, fine in split["splits"].items():
        if len(fine) > 1:
            click.echo(f"  {split['coarse'].upper()}{coarse} -> " + ", ".join(f"{split['fine'].upper()}{f}" for f in fine))


@click.command()
@click.argument("decomposition", type=DIRECTORY)
@STORE_OPTION
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option("-k", "k", default=16, show_default=True, type=click.IntRange(1),
              help="Top examples shown per component.")
@click.option("--perturbation", default=None, type=DIRECTORY,
              help="Results of npeff perturb to show (default: DECOMPOSITION/perturbation when it is there).")
@click.option("--compare", "others", multiple=True, type=DIRECTORY,
              help="Another method's output over the same examples (G-NPEFF, npeff cluster, npeff sae), shown "
                   "beside this one as in the paper's Table 1 (repeatable).")
@SUPPORT_OPTION
@click.option("--spectrum/--no-spectrum", "spectrum", default=None,
              help="Add the eigenvalue decay of the store's PEFs (one pass over the store; default: when --store "
                   "is given).")
@overwrite_option("an existing file at --out")
def report(decomposition, store, out, k, perturbation, others, support_threshold, spectrum, overwrite):
    """Write one self-contained HTML page about DECOMPOSITION (works offline).

    DECOMPOSITION may also be the coefficients npeff fit wrote (held-out data). The page shows
    the store's and the decomposition's settings, the loss curve, the distributions of
    coefficients and component sizes (raw non-zero and effective support), the tuning table, and
    a searchable, sortable card per component with its top examples; with perturbation results,
    their KL and norm ratios; with --compare, the tunings and tuning classifier of every method
    side by side; with the store (--store or --spectrum), the mean eigenvalue decay of its PEFs.
    """
    from npeff.ops.report import write_report

    support_threshold = _checked_support(support_threshold)
    path = write_report(_open(decomposition), store, out=out, k=k, overwrite=overwrite, perturbation=perturbation,
                        compare=list(others), support_threshold=support_threshold,
                        spectrum=store is not None if spectrum is None else spectrum)
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


@click.command()
@click.argument("store", type=DIRECTORY)
@click.option("--normalize", type=click.Choice(["max", "sum", "frobenius"]), default="max", show_default=True,
              help="Divide each example's eigenvalues by the largest, by their sum (shares of the trace) or by "
                   "their root sum of squares (the unit-Frobenius-norm PEF).")
@DEVICE
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64", show_default=True,
              help="Dtype of the Gram matrices and eigenvalues.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the settings, counts and one list per column).")
def spectrum(store, normalize, device, dtype, as_json):
    """The mean normalised eigenvalue decay of STORE's PEFs (paper, Figure 3).

    Per example of status ok: the eigenvalues of the r x r Gram matrix G G^T (the non-zero
    eigenvalues of the PEF G^T G), largest first, normalised (--normalize), then averaged over the
    examples. The table gives, for each j, their mean and standard deviation and the mean share
    of the trace held by the top j (what an SVD rank reduction to j rows keeps, --svd-rank).
    One pass over the store, streamed piece by piece.

    \b
    Example:
      npeff spectrum sst2.store --json | jq .mean
    """
    from npeff.ops.analysis import pef_spectrum

    result = pef_spectrum(store, normalize=normalize, device=device, dtype=dtype, progress=True)
    if as_json:
        echo_json(result.to_dict())
        return
    by = {"max": "the largest", "sum": "their sum", "frobenius": "their root sum of squares"}[normalize]
    click.echo(f"eigenvalues of G G^T for {result.n_used:,} of {result.n_examples:,} examples (rank {result.rank}), "
               f"each divided by {by}")
    if result.n_not_ok or result.n_zero:
        click.echo(f"  left out: {result.n_not_ok:,} whose status is not ok, {result.n_zero:,} with a zero PEF")
    click.echo(f"{'j':>4}  {'mean':>10}  {'std':>10}  {'top-j share':>11}")
    for j, (mean, std, share) in enumerate(zip(result.mean, result.std, result.cumulative_share), start=1):
        click.echo(f"{j:>4}  {mean:>10.4g}  {std:>10.4g}  {share:>11.4f}")


COMMANDS = [top_examples, tunings, compare, report, spectrum]
