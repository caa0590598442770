"""The ``npeff`` command: a thin click layer over the library.

Heavy imports (torch, numba, tensorstore) happen inside the commands so that ``npeff --help`` is fast.
Errors a user can fix are printed as one red line on stderr with exit status 1, never a traceback.
"""

from __future__ import annotations

import click

from npeff import __version__
from npeff.cli._common import CONTEXT_SETTINGS
from npeff.errors import NpeffError


class UserFacingError(click.ClickException):
    """A :class:`NpeffError` shown as ``Error: ...`` in red on stderr (exit status 1)."""

    def show(self, file=None) -> None:
        click.secho(f"Error: {self.format_message()}", fg="red", err=True)


class NpeffGroup(click.Group):
    """Click group that turns :class:`NpeffError` (and a missing file) into a one-line error."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["npeff.argv"] = list(args)  # recorded in stores' provenance
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NpeffError as error:
            raise UserFacingError(str(error)) from error


@click.group(cls=NpeffGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="npeff")
def cli() -> None:
    """npeff: Non-Negative Per-Example Fisher Factorization, out of core.

    Build stores of projected per-example Fisher matrices from a model and a dataset, decompose
    them with NPEFF streaming from disk, and inspect, share and use the results.
    """
    import warnings

    # warnings are for people here: one line, no source location
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"


def register_commands() -> None:
    """Every command group's commands on the ``npeff`` group (they inherit its context settings)."""
    from npeff.cli import analysis, baselines, build, decompose, demo, perturb, store

    for group in (build, decompose, baselines, store, analysis, perturb, demo):
        for command in group.COMMANDS:
            cli.add_command(command)


register_commands()


def main() -> None:  # console-script entry point
    cli(prog_name="npeff")
