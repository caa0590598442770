"""``npeff top-examples``, ``npeff tunings``, ``npeff compare`` and ``npeff report``."""

from __future__ import annotations

import textwrap

import click

from npeff.cli._common import DIRECTORY, echo_json, overwrite_option, percent

STORE_OPTION = click.option(
    "--store", default=None, type=DIRECTORY,
    help="The PEF store the decomposition was computed from (default: the path it records).")


def _open(path: str):
    from npeff.store.decomposition import open_decomposition

    return open_decomposition(path)


@click.command("top-examples")
@click.argument("decomposition", type=DIRECTORY)
@STORE_OPTION
@click.option("-k", "k", default=16, show_default=True, type=int, help="Examples per component.")
@click.option("--component", "components", multiple=True, type=int,
              help="Only this component (repeatable; default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def top_examples(decomposition, store, k, components, as_json):
    """Show each component's top-k examples by coefficient.

    Examples with a zero coefficient are never listed; equal coefficients go by example index.
    Each row has the coefficient, the example's id, gold label, the model's prediction and text.
    """
    from npeff.ops import analysis

    decomp = _open(decomposition)
    opened = analysis.open_store_for(decomp, store)
    result = analysis.top_examples(decomp, opened, k=k, components=list(components))
    if as_json:
        echo_json(result)
        return
    names = analysis.label_names(opened)
    for entry in result:
        click.secho(f"component {entry['component']}: {entry['n_nonzero']:,} examples with non-zero coefficient",
                    bold=True)
        if not entry["examples"]:
            click.echo("  (no example has a non-zero coefficient)")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON (summary and one record per component).")
def tunings(decompositions, store, as_json):
    """Which components are prediction-, label- and LnP-tuned (paper section 3, Table 1).

    A component is prediction-tuned (label-tuned) when all of its top 16 examples share one
    prediction (gold label); LnP means label- but not prediction-tuned. Components with fewer than
    16 examples of non-zero coefficient (clusters of fewer than 16 members) are excluded and
    counted. Percentages are over the components analysed. The tuning classifier (section 3.3):
    each component votes for a label held by at least 75% of its top 16 examples, and an example
    is classified by its coefficients' weighted votes; its accuracy and its agreement with the
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

    rows = [analysis.method_row(path, store) for path in decompositions]
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
               f"({summary['n_excluded']} excluded: fewer than {summary['top']} examples with non-zero coefficient)")
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
    width = max(len(f"{row['name']} ({row['method']})") for row in rows)
    click.echo(f"{'method':<{width}}  {'C':>5} {'analysed':>8}  {'Pred':>6} {'Label':>6} {'LnP':>6}  "
               f"{'clf acc':>7} {'agree':>6}")
    for row in rows:
        summary, classifier = row["tunings"].summary(), row["classifier"] or {}
        click.echo(f"{row['name'] + ' (' + row['method'] + ')':<{width}}  {summary['n_components']:>5} "
                   f"{summary['n_included']:>8}  {percent(summary['prediction_tuned_pct'], 6)} "
                   f"{percent(summary['label_tuned_pct'], 6)} {percent(summary['lnp_tuned_pct'], 6)}  "
                   f"{percent(None if classifier.get('accuracy') is None else 100 * classifier['accuracy'], 7)} "
                   f"{percent(None if classifier.get('agreement_with_model') is None else 100 * classifier['agreement_with_model'], 6)}")


@click.command()
@click.argument("decomposition_a", type=DIRECTORY)
@click.argument("decomposition_b", type=DIRECTORY)
@click.option("--store", default=None, type=DIRECTORY,
              help="The store both were computed from, for the tunings preserved (default: the one A records).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, with the full split map.")
def compare(decomposition_a, decomposition_b, store, as_json):
    """Compare two decompositions of the same store (paper section 4 and appendix F).

    The similarity score is the mean, over all components of both, of the best cosine similarity of
    a component's coefficient vector with a component of the other. The split map sends each
    component of the finer decomposition to its most similar coarse one; the fraction of tunings
    preserved counts, among fine components mapped to prediction-tuned coarse ones, those
    prediction-tuned to the same prediction.
    """
    from npeff.ops import analysis

    result = analysis.compare(_open(decomposition_a), _open(decomposition_b), store)
    if as_json:
        echo_json(result)
        return
    split = result["split_map"]
    click.echo(f"similarity score {result['similarity']:.4f} "
               f"(A: {result['n_components_a']} components, B: {result['n_components_b']})")
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
@overwrite_option("an existing file at --out")
def report(decomposition, store, out, k, perturbation, others, overwrite):
    """Write one self-contained HTML page about DECOMPOSITION (works offline).

    It shows the store's and the decomposition's settings, the loss curve, the distributions of
    coefficients and component sizes, the tuning table, and a searchable, sortable card per
    component with its top examples; with perturbation results, their KL and norm ratios; with
    --compare, the tunings and tuning classifier of every method side by side.
    """
    from npeff.ops.report import write_report

    path = write_report(_open(decomposition), store, out=out, k=k, overwrite=overwrite, perturbation=perturbation,
                        compare=list(others))
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


COMMANDS = [top_examples, tunings, compare, report]
