"""The root ``melo`` command: global options, the application object, the command groups.

Only Typer is imported at start-up; commands import the SDK and rich in their bodies, so
``melo --help`` stays fast.
"""

import os
from pathlib import Path
from typing import Annotated

# melo loads no pydantic plugins; skipping their entry-point scan saves ~30 ms of every start-up.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer

from melo_cli.application import Application
from melo_cli.commands import (
    account,
    admin,
    chats,
    devices,
    invites,
    listen,
    members,
    messages,
    profile,
    profiles,
    push,
    schedule,
    sessions,
    smoke,
)
from melo_cli.errors import EXIT_CODES_EPILOG
from melo_cli.global_options import (
    HOME_HELP,
    JSON_HELP,
    PROFILE_HELP,
    QUIET_HELP,
    SERVER_HELP,
    VERBOSE_HELP,
    MeloTyper,
    check_profile,
)

app = MeloTyper(
    name="melo",
    help="Melo: a terminal-first, end-to-end encrypted messenger.\n\n"
    "--server, --profile, --home, --json, -v and -q work before or after the command "
    "(`melo whoami --server URL`).",
    epilog=EXIT_CODES_EPILOG,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # plain Click help: rich is imported only by commands that print tables
)


@app.callback()
def root(
    ctx: typer.Context,
    server: Annotated[
        str | None, typer.Option("--server", envvar="MELO_SERVER", metavar="URL", show_default=False, help=SERVER_HELP)
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option("--profile", envvar="MELO_PROFILE", metavar="NAME", callback=check_profile, show_default=False,
                     help=PROFILE_HELP),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option("--home", envvar="MELO_HOME", metavar="DIR", file_okay=False, show_default=False, help=HOME_HELP),
    ] = None,
    json_mode: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, show_default=False, help=VERBOSE_HELP)] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)] = False,
) -> None:
    given = profile is not None  # --profile or MELO_PROFILE: later --home does not change it
    if profile is None and ctx.invoked_subcommand is not None:
        from melo_cli.config import selected_profile
        from melo_protocol.client.tokens import default_home

        profile = selected_profile(home if home is not None else default_home())
    ctx.obj = Application(
        server=server or None,
        profile=profile or "default",
        home=home,
        json_mode=json_mode,
        verbosity=-1 if quiet else verbose,
        profile_given=given,
    )


app.command("register")(account.register)
app.command("login")(account.login)
app.command("logout")(account.logout)
app.command("whoami")(account.whoami)
app.add_typer(profiles.app, name="profiles")
app.add_typer(sessions.app, name="sessions")
app.add_typer(profile.profile_app, name="profile")
app.add_typer(profile.avatar_app, name="avatar")
app.add_typer(chats.app, name="chats")
app.add_typer(members.app, name="members")
app.command("slowmode")(chats.slowmode)
app.command("call")(__import__("melo_cli.commands.calls", fromlist=["call"]).call)
app.add_typer(invites.app, name="invites")
app.command("join")(invites.join)
app.add_typer(admin.app, name="admin")
app.command("send")(messages.send)
app.command("history")(messages.history)
app.command("listen")(listen.listen)
app.command("edit")(messages.edit)
app.command("delete")(messages.delete)
app.command("react")(messages.react)
app.command("pin")(messages.pin)
app.command("read")(messages.read)
app.add_typer(schedule.app, name="schedule")
app.command("timer")(schedule.timer)
app.add_typer(push.app, name="push")
app.add_typer(devices.app, name="devices")
app.command("verify")(devices.verify)
app.command("smoke")(smoke.smoke)


def run() -> None:
    app(prog_name="melo")


if __name__ == "__main__":
    run()
