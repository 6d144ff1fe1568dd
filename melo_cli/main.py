"""The root ``melo`` command: global options, the application object, the command groups.

Only Typer is imported at start-up; commands import the SDK and rich in their bodies, so
``melo --help`` stays fast.
"""

from pathlib import Path
from typing import Annotated

import typer

from melo_cli.application import DEFAULT_SERVER, Application
from melo_cli.commands import account, sessions
from melo_cli.errors import EXIT_CODES_EPILOG


def _check_profile(value: str) -> str:
    from melo_protocol.client.tokens import check_profile_name

    try:
        return check_profile_name(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


app = typer.Typer(
    name="melo",
    help="Melo: a terminal-first, end-to-end encrypted messenger.",
    epilog=EXIT_CODES_EPILOG,
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar="MELO_SERVER",
            show_default=False,
            help=f"server URL (default: the profile's server, else {DEFAULT_SERVER})",
        ),
    ] = None,
    profile: Annotated[
        str,
        typer.Option(
            "--profile",
            envvar="MELO_PROFILE",
            callback=_check_profile,
            help="account profile: one login per profile",
        ),
    ] = "default",
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            envvar="MELO_HOME",
            file_okay=False,
            show_default=False,
            help="melo's data directory (default: the platform's user data dir)",
        ),
    ] = None,
    json_mode: Annotated[
        bool, typer.Option("--json", help="print one JSON document instead of text")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="more diagnostics on stderr")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the data asked for")] = False,
) -> None:
    ctx.obj = Application(
        server=server or None,
        profile=profile,
        home=home,
        json_mode=json_mode,
        verbosity=-1 if quiet else verbose,
    )


app.command("register")(account.register)
app.command("login")(account.login)
app.command("logout")(account.logout)
app.command("whoami")(account.whoami)
app.add_typer(sessions.app, name="sessions")


def run() -> None:
    app(prog_name="melo")


if __name__ == "__main__":
    run()
