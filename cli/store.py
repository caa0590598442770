"""``npeff info``, ``verify`` and ``merge``: check and combine PEF stores (local paths or URLs)."""

from __future__ import annotations

import json

import click

from npeff.cli._common import DIRECTORY, command_line, echo_json, json_option, overwrite_option


@click.command()
@click.argument("store", type=DIRECTORY)
@json_option("the description")
def info(store: str, as_json: bool) -> None:
    """Describe a PEF store (a local path or a URL: file://, http(s)://, s3://, gs://,
    hf://datasets/ORG/NAME[@REVISION][/SUBDIR]): shape, size on disk, projection spec, parameters, model, PEF spec,
    provenance and the compatibility fingerprint (equal fingerprints: mergeable stores)."""
    from npeff.store import format_info, open_store, store_info

    description = store_info(open_store(store))
    click.echo(json.dumps(description, indent=1) if as_json else format_info(description))


@click.command()
@click.argument("store", type=DIRECTORY)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print only problems.")
@json_option("the report (path, status, num_shards, num_examples, ok, problems, notes)")
def verify(store: str, quiet: bool, as_json: bool) -> None:
    """Check a store's checksums, tensor metadata, table schema and row counts.

    Exits with status 1 and names the bad shard when anything is wrong (with --json too, after the
    report).
    """
    from npeff.errors import StoreCorruptError
    from npeff.store import verify_store

    report = verify_store(store, progress=not quiet)
    if as_json:
        echo_json({"path": report.path, "status": report.status, "num_shards": report.num_shards,
                   "num_examples": report.num_examples, "ok": report.ok, "problems": list(report.problems),
                   "notes": list(report.notes)})
    elif not quiet:
        for note in report.notes:
            click.echo(f"note: {note}")
    if report.problems:
        if not as_json:  # the report holds them
            for problem in report.problems:
                click.secho(f"problem: {problem}", fg="red", err=True)
        raise StoreCorruptError(f"{store} failed verification: {len(report.problems)} problem(s)")
    if not quiet and not as_json:
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


COMMANDS = [info, verify, merge]
