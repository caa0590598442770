"""What the commands share: click settings, path types, options used by several commands, the
command line recorded in provenance, options generated from a config dataclass, and formatting."""

from __future__ import annotations

import dataclasses
import json
import shlex
from typing import Any, Callable

import click

from npeff.ops.decomposition.config import COMPUTE_DTYPES

#: the environment variables' prefix: ``NPEFF_<COMMAND>_<OPTION>`` sets an option of a command
ENVVAR_PREFIX = "NPEFF"

#: the group's context settings; every command inherits them (the envvar prefix as
#: ``NPEFF_<COMMAND>``), also when the group is invoked through click's CliRunner
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100,
                    "auto_envvar_prefix": ENVVAR_PREFIX}

#: a directory argument (store, decomposition, output folder)
DIRECTORY = click.Path(file_okay=False, path_type=str)

#: the torch device option of the commands that compute
DEVICE = click.option("--device", default="cpu", show_default=True, help="Torch device: cpu, cuda or cuda:N.")

#: the compute dtype option (decomposition and fitting)
COMPUTE_DTYPE = click.option("--dtype", type=click.Choice(COMPUTE_DTYPES), default="float32",
                             show_default=True, help="Compute dtype.")

#: the memory budget of a pass over a store
MEMORY_BUDGET = click.option("--memory-budget", default=None,
                             help="Bytes of chunks kept resident (e.g. 2GB); the rest streams from disk each step.")


def json_option(what: str) -> Callable:
    """``--json``: print ``what`` as JSON on stdout (alone there: progress and log lines go to stderr)."""
    return click.option("--json", "as_json", is_flag=True,
                        help=f"Print {what} as JSON on stdout (progress and log lines stay on stderr).")


def overwrite_option(what: str) -> Callable:
    """``--overwrite``: replace an earlier output (``what`` says which)."""
    return click.option("--overwrite", is_flag=True, help=f"Replace {what}.")


def command_line() -> str:
    """The ``npeff ...`` command being run (as parsed by the group), for provenance records."""
    return "npeff " + shlex.join(click.get_current_context().meta.get("npeff.argv", []))


def config_options(config_class: type, *, names: dict[str, tuple[str, ...]] | None = None,
                   exclude: tuple[str, ...] = ()) -> Callable:
    """Click options for the fields of a frozen config dataclass, with its defaults and the help text
    in each field's ``metadata["help"]`` (written once, in the dataclass).

    ``--field-name`` per field (``names`` may give other declarations, e.g. ``("--n-components",
    "-C")``); a field without a default is required; ``Literal``-like string fields with a
    ``metadata["choices"]`` become a choice; a ``bool`` field is a ``--name/--no-name`` flag.
    """
    names = names or {}

    def decorate(command: Callable) -> Callable:
        for field in reversed(dataclasses.fields(config_class)):
            if field.name in exclude:
                continue
            declarations = names.get(field.name, ("--" + field.name.replace("_", "-"),))
            type_name = field.type if isinstance(field.type, str) else field.type.__name__
            if type_name == "bool":
                flag = declarations[0]
                command = click.option(f"{flag}/--no-{flag[2:]}", field.name, default=field.default,
                                       show_default=True, help=field.metadata.get("help"))(command)
                continue
            kind = {"int": int, "float": float, "str": str}[type_name.removesuffix(" | None")]
            choices = field.metadata.get("choices")
            required = field.default is dataclasses.MISSING
            command = click.option(
                *declarations, field.name, type=click.Choice(choices) if choices else kind, required=required,
                default=None if required else field.default, show_default=not required,
                help=field.metadata.get("help"))(command)
        return command

    return decorate


def config_from_options(config_class: type, options: dict[str, Any]) -> Any:
    """The config built from the options :func:`config_options` added (others are left alone)."""
    fields = {field.name for field in dataclasses.fields(config_class)}
    return config_class(**{name: value for name, value in options.items() if name in fields})


class EnvvarOption(click.Option):
    """An option whose ``--help`` shows its environment variable in brackets of its own, after the
    default: ``[default: 1000]  [env var: NPEFF_DECOMPOSE_WARMUP_STEPS]``."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown, self.show_envvar = self.show_envvar, False
        try:
            record = super().get_help_record(ctx)
        finally:
            self.show_envvar = shown
        if record is None or not shown:
            return record
        envvars = super().get_help_extra(ctx).get("envvars")
        if not envvars:
            return record
        spec, text = record
        shown_envvars = f"[env var: {', '.join(envvars)}]"
        return spec, (f"{text}  {shown_envvars}" if text else shown_envvars)


def document_envvars(command: click.Command, prefix: str = ENVVAR_PREFIX) -> None:
    """Show each option's environment variable in ``--help``, for ``command`` and (a group) its
    subcommands, and name the variable after the option's flag: ``NPEFF_INFO_JSON`` for
    ``npeff info --json``, not after its parameter name (``as_json``), which is what click's
    automatic prefix would use. Eager options without a value (``--version``) read no variable.
    """
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        if param.is_eager and not param.expose_value:
            param.allow_from_autoenv = False
            continue
        if type(param) is click.Option:
            param.__class__ = EnvvarOption
        flags = [opt for opt in param.opts if opt.startswith("--")]
        name = (flags[0][2:] if flags else param.name or "").replace("-", "_").upper()
        if param.envvar is None and name != (param.name or "").upper():
            param.envvar = f"{prefix}_{name}"
            param.allow_from_autoenv = False  # one documented name
        param.show_envvar = True
    for name, subcommand in getattr(command, "commands", {}).items():
        document_envvars(subcommand, f"{prefix}_{name.replace('-', '_').upper()}")


def echo_json(payload: Any) -> None:
    """Print ``payload`` as indented JSON."""
    click.echo(json.dumps(payload, indent=1))


def ratio(value: float | None) -> str:
    """A ratio to three significant digits, or ``n/a`` for None."""
    return "n/a" if value is None else f"{value:.3g}"


def percent(value: float | None, width: int = 5) -> str:
    """``" 12.5%"`` (one decimal, right-aligned in ``width``), or ``n/a`` for None."""
    return "n/a" if value is None else f"{value:{width}.1f}%"
