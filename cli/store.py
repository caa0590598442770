"""``npeff info``, ``verify``, ``merge`` and ``export``: share and check PEF stores."""

from __future__ import annotations

import json

import click

from npeff.cli._common import DIRECTORY, command_line, overwrite_option


@click.command()
@click.argument("store", type=DIRECTORY)
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def info(store: str, as_json: bool) -> None:
    """Describe a PEF store: shape, size on disk, projection spec, parameters, model, PEF spec,
    provenance and the compatibility fingerprint (equal fingerprints: mergeable stores)."""
    from npeff.store import format_info, open_store, store_info

    description = store_info(open_store(store))
    click.echo(json.dumps(description, indent=1) if as_json else format_info(description))


@click.command()
@click.argument("store", type=DIRECTORY)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print only problems.")
def verify(store: str, quiet: bool) -> None:
    """Check a store's checksums, tensor metadata, table schema and row counts.

    Exits with status 1 and names the bad shard when anything is wrong.
    """
    from npeff.errors import StoreCorruptError
    from npeff.store import verify_store

    report = verify_store(store, progress=not quiet)
    for note in report.notes:
        if not quiet:
            click.echo(f"note: {note}")
    if report.problems:
        for problem in report.problems:
            click.secho(f"problem: {problem}", fg="red", err=True)
        raise StoreCorruptError(f"{store} failed verification: {len(report.problems)} problem(s)")
    if not quiet:
        click.echo(f"OK: {report.num_examples:,} examples in {report.num_shards} shards verified "
                   f"({report.status})")


@click.command()
@click.argument("out", type=DIRECTORY)
@click.argument("stores", nargs=-1, required=True, type=DIRECTORY)
@overwrite_option("OUT if it is already a store")
def merge(out: str, stores: tuple[str, ...], overwrite: bool) -> None:
    """Concatenate compatible stores into OUT, in the order given.

    Typically the pieces of one build run on several machines (`npeff build --shard i/N`). Stores
    whose projection spec, parameter layout, kind, shape, dtype, model or PEF spec differ are
    refused, with the differences shown.
    """
    from npeff.store import merge_stores

    merged = merge_stores(out, stores, overwrite=overwrite, progress=True, command=command_line())
    click.echo(f"merged {len(stores)} stores into {merged.path}: {merged.num_examples:,} examples, "
               f"fingerprint {merged.fingerprint}")


@click.command()
@click.argument("store", type=DIRECTORY)
@click.argument("out", type=DIRECTORY)
@click.option("--format", "fmt", type=click.Choice(["hf"]), default="hf", show_default=True,
              help="hf: a Hugging Face datasets folder (Parquet table + dataset card, tensor as zarr).")
@overwrite_option("OUT if it is an earlier export")
def export(store: str, out: str, fmt: str, overwrite: bool) -> None:
    """Export STORE to OUT in a format others can load without npeff.

    With --format hf, OUT loads with datasets.load_dataset("parquet", data_files="OUT/data/*.parquet")
    or datasets.load_dataset("OUT").
    """
    from npeff.store import export_hf

    path = export_hf(store, out, overwrite=overwrite, progress=True)
    click.echo(f"exported {store} to {path} ({fmt})")


COMMANDS = [info, verify, merge, export]
