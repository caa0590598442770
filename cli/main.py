"""The ``npeff`` command: a thin click layer over the library.

Heavy imports (torch, numba, tensorstore) happen inside the commands so that ``npeff --help`` is fast.
Errors a user can fix are printed as one red line on stderr with exit status 1, never a traceback.
"""

from __future__ import annotations

import click

from npeff import __version__
from npeff.cli._common import CONTEXT_SETTINGS, document_envvars
from npeff.errors import NpeffError, first_line


class UserFacingError(click.ClickException):
    """A :class:`NpeffError` shown as ``Error: ...`` in red on stderr (exit status 1)."""

    def show(self, file=None) -> None:
        click.secho(f"Error: {self.format_message()}", fg="red", err=True)


class NpeffGroup(click.Group):
    """Click group that turns :class:`NpeffError`, a missing optional part, an error of the operating
    system (a read-only or full disk, a path below a file) and a failed allocation into one line."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["npeff.argv"] = list(args)  # recorded in stores' provenance
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NpeffError as error:
            raise UserFacingError(str(error)) from error
        except ImportError as error:  # an optional part that is not installed: say which extra
            from npeff.extras import missing_extra_message

            name = ctx.invoked_subcommand or "this command"
            message = missing_extra_message(error, f"npeff {name}")
            if message is None:
                raise
            raise UserFacingError(message) from error
        except OSError as error:  # a read-only or full disk, a path below a file, no permission
            raise UserFacingError(os_error_message(error)) from error
        except MemoryError as error:
            raise UserFacingError(f"not enough memory: {first_line(error)}; lower --memory-budget or the sizes "
                                  f"asked for") from error


def os_error_message(error: OSError) -> str:
    """One line for an error of the operating system: what failed, on which path."""
    import errno

    paths = " -> ".join(str(name) for name in (error.filename, error.filename2) if name is not None)
    reason = error.strerror or first_line(error)
    advice = {errno.ENOSPC: " (the disk is full; what was being written was removed)",
              errno.EROFS: " (a read-only location: write the output elsewhere)",
              errno.EACCES: " (no permission: write the output elsewhere)",
              errno.ENOTDIR: " (a part of the path is a file, not a folder)"}.get(error.errno, "")
    return f"{reason}: {paths}{advice}" if paths else f"{reason}{advice}"


@click.group(cls=NpeffGroup, context_settings=CONTEXT_SETTINGS)
@click.option("-v", "--verbose", count=True, help="Also log debug lines on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Log only warnings and errors on stderr; no progress.")
@click.option("--progress-interval", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Without a terminal on stderr (or with TQDM_DISABLE set), progress is a log line at most "
                   "every SECONDS instead of a bar.  [default: 30]")
@click.version_option(__version__, "-V", "--version", prog_name="npeff")
def cli(verbose: int, quiet: bool, progress_interval: float | None) -> None:
    """npeff: Non-Negative Per-Example Fisher Factorization, out of core.

    Build stores of projected per-example Fisher matrices from a model and a dataset, decompose
    them with NPEFF streaming from disk, and inspect, share and use the results.

    Results go to stdout (with --json, as JSON and nothing else); log lines ("npeff: ...") and
    progress go to stderr: a bar on a terminal, else a line every --progress-interval seconds.
    Every option can also be set by an environment variable, NPEFF_<COMMAND>_<OPTION> (e.g.
    NPEFF_DECOMPOSE_MEMORY_BUDGET=8GB, NPEFF_INFO_JSON=1), NPEFF_<OPTION> for the options above
    (NPEFF_QUIET=1); --help shows each one's name. An option on the command line wins.
    """
    import logging
    import platform
    import warnings

    from npeff import progress

    if verbose and quiet:
        raise click.UsageError("-v/--verbose and -q/--quiet exclude each other")
    progress.configure(level=logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO,
                       interval=progress_interval)
    progress.log.debug("npeff %s on Python %s", __version__, platform.python_version())

    # warnings are for people here: one line, no source location
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"


def register_commands() -> None:
    """Every command group's commands on the ``npeff`` group (they inherit its context settings)."""
    from npeff.cli import analysis, baselines, build, decompose, demo, perturb, sharing, store

    for group in (build, decompose, baselines, store, sharing, analysis, perturb, demo):
        for command in group.COMMANDS:
            cli.add_command(command)
    document_envvars(cli)


register_commands()


def main() -> None:  # console-script entry point
    try:
        cli(prog_name="npeff")
    except SystemExit as done:
        _exit_past_tensorstore_shutdown(done.code)
        raise


def _exit_past_tensorstore_shutdown(code) -> None:
    """After a run that read a store over the network, flush and ``os._exit``: TensorStore's HTTP
    transport can abort the interpreter's shutdown (google/tensorstore#275), which would turn a
    finished command into a crash with exit status 134."""
    import sys

    location = sys.modules.get("npeff.store.location")
    if location is None or not location.network_transport_used():
        return
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    status = code if isinstance(code, int) else (0 if code is None else 1)
    os._exit(status)


if __name__ == "__main__":  # python -m npeff.cli.main
    main()
