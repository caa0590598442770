"""Helpers shared by the commands."""

import shlex

import click


def command_line() -> str:
    """The ``npeff ...`` command being run (as parsed by the group), for provenance records."""
    return "npeff " + shlex.join(click.get_current_context().meta.get("npeff.argv", []))
