"""The global options (--server, --profile, --home, --json, -v, -q), before or after the subcommand.

The root callback takes them before the subcommand (``melo --server URL whoami``); every command
takes them after it too (``melo whoami --server URL``, as CI lines are usually written), through
``MeloCommand``, the class of every melo command. A command's ``--help`` lists them under "Global
options". Precedence: the command line over the environment (MELO_SERVER…, read by the root only),
and on the command line the last one given wins, as with any repeated option. Only Typer and Click
are imported here: ``melo --help`` stays fast.
"""

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from melo_cli.application import DEFAULT_SERVER, get_app

if TYPE_CHECKING:
    from typer._click import HelpFormatter, Parameter

SERVER_HELP = f"server URL (default: the profile's server, else {DEFAULT_SERVER})"
PROFILE_HELP = "account profile: one login per profile (default: `melo profiles use`'s choice, else 'default')"
HOME_HELP = "melo's data directory (default: the platform's user data dir)"
JSON_HELP = "print one JSON document instead of text"
VERBOSE_HELP = "more diagnostics on stderr"
QUIET_HELP = "print only the data asked for"
GLOBAL_SECTION = "Global options (also accepted before the command)"


def check_profile(value: str | None) -> str | None:
    """A --profile value must be a valid profile name (it names files): a bad one is a usage error."""
    if value is None:
        return None
    from melo_protocol.client.tokens import check_profile_name

    try:
        return check_profile_name(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _after_command(
    global_server: Annotated[str | None, typer.Option("--server", metavar="URL", help=SERVER_HELP)] = None,
    global_profile: Annotated[
        str | None, typer.Option("--profile", metavar="NAME", callback=check_profile, help=PROFILE_HELP)
    ] = None,
    global_home: Annotated[
        Path | None, typer.Option("--home", metavar="DIR", file_okay=False, help=HOME_HELP)
    ] = None,
    global_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    global_verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, show_default=False, help=VERBOSE_HELP)
    ] = 0,
    global_quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
) -> None:
    """The global options as a command takes them after its name (no environment variables: the root
    reads those, so they never override an option given on the command line)."""


@functools.cache
def _global_params() -> tuple["Parameter", ...]:
    """The parameters of ``_after_command``, built by Typer once and shared by every command."""
    holder = typer.Typer(add_completion=False)
    holder.command()(_after_command)
    return tuple(typer.main.get_command(holder).params)


class MeloCommand(TyperCommand):
    """A Typer command that also takes the global options after its name and hands them to the Application."""

    def __init__(self, name: str | None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        taken = {opt for param in self.params for opt in param.opts}
        # a command with its own --json (most read commands) keeps it: both mean the same
        self.params.extend(p for p in _global_params() if not taken.intersection(p.opts))
        self._global_names = {p.name for p in self.params if p.name and p.name.startswith("global_")}

    def invoke(self, ctx: typer.Context) -> Any:
        given = {name.removeprefix("global_"): ctx.params.pop(name) for name in self._global_names}
        get_app(ctx).apply_options(**given)
        return super().invoke(ctx)

    def format_options(self, ctx: typer.Context, formatter: "HelpFormatter") -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": [], GLOBAL_SECTION: []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                sections["Arguments"].append(record)
            else:
                sections[GLOBAL_SECTION if param.name in self._global_names else "Options"].append(record)
        for title, records in sections.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


class MeloTyper(typer.Typer):
    """A Typer app whose commands are ``MeloCommand``s (so they all take the global options)."""

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None,
                **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return super().command(name, cls=cls or MeloCommand, **kwargs)
