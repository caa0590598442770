"""``npeff card`` and ``npeff upgrade``: make a local store ready to share as it is (a dataset card;
the zarr group and dimension names that stores of earlier versions lack)."""

from __future__ import annotations

import click

from npeff.cli._common import DIRECTORY


@click.command()
@click.argument("store", type=DIRECTORY)
@click.option("--name", default=None, help="The dataset's name in the card (default: the store's folder name).")
def card(store: str, name: str | None) -> None:
    """Write the dataset card STORE/README.md: model, task, projection, fingerprint, and how to
    load the store with npeff, datasets, zarr, TensorStore and xarray.

    The store is then itself the dataset to share; upload it as it is:

    \b
      npeff card sst2.store
      hf upload ORG/sst2-pefs sst2.store . --repo-type dataset
      npeff verify hf://datasets/ORG/sst2-pefs
    """
    from npeff.store.card import write_card

    click.echo(f"wrote {write_card(store, name=name)}")


@click.command()
@click.argument("store", type=DIRECTORY)
def upgrade(store: str) -> None:
    """Add to a store written by an earlier npeff what lets zarr and xarray open it (the root zarr
    group, the tensor's dimension names). Data, table, manifest and checksums are not touched."""
    from npeff.store.upgrade import upgrade_store

    changes = upgrade_store(store)
    for change in changes:
        click.echo(f"updated {change}")
    if not changes:
        click.echo(f"{store} is up to date")


COMMANDS = [card, upgrade]
