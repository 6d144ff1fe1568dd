"""Account commands: register, login, logout, whoami."""

import socket
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import Application, get_app

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient
    from melo_protocol.wire import TokenResponse

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document instead of text")]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="read the password from the first line of stdin")
]
DeviceNameOpt = Annotated[
    str | None, typer.Option("--device-name", help="a name for this device in `melo sessions list`")
]


def read_password(app: Application, from_stdin: bool, *, confirm: bool) -> str:
    """From stdin (one line) or a hidden prompt; never from argv, where other users could see it.

    Without a terminal there is no one to prompt: say how to pass it instead (exit 2), before getpass
    would warn that it cannot hide the input and read a line from the pipe.
    """
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise typer.BadParameter("no password on stdin", param_hint="--password-stdin")
        return password
    from melo_cli.safety import stdin_is_tty

    if not stdin_is_tty():
        from melo_cli.errors import ExitCode

        app.fail("no terminal to ask for a password: use --password-stdin", code="no_terminal",
                 exit_code=ExitCode.USAGE)
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=confirm))


async def _publish_device_keys(app: Any, client: "MeloClient") -> None:
    """Upload this new device's E2E identity and one-time keys, so others can encrypt to it at once."""
    from melo_protocol.client.messenger import Messenger

    messenger = Messenger.open(client, app.store())
    try:
        await messenger.start(live=False)
    finally:
        await messenger.close()


def default_device_name() -> str:
    return f"melo-cli on {socket.gethostname()}"[:64]


def _login_document(app: Application, client: "MeloClient", tokens: "TokenResponse") -> dict[str, Any]:
    return {
        "server": client.server_url,
        "profile": app.profile,
        "username": tokens.user.username,
        "user_id": tokens.user.id,
        "session_id": tokens.session_id,
        "device_id": tokens.device_id,
    }


def register(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="the new account's name (3-32 of a-z 0-9 _ . -)")],
    password_stdin: PasswordStdinOpt = False,
    registration_token: Annotated[
        str | None, typer.Option("--registration-token", help="needed when the server is invite-only")
    ] = None,
    device_name: DeviceNameOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Create an account and log in as it."""
    app = get_app(ctx, json_flag)
    password = read_password(app, password_stdin, confirm=True)

    async def go(client: "MeloClient") -> dict[str, Any]:
        tokens = await client.register(
            username,
            password,
            registration_token=registration_token,
            device_name=device_name or default_device_name(),
        )
        await _publish_device_keys(app, client)
        return _login_document(app, client, tokens)

    doc = app.run(go)
    app.output.emit(
        doc,
        lambda: app.output.result(
            f"Registered and logged in as {doc['username']} on {doc['server']} (session {doc['session_id']})"
        ),
    )


def login(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="your account name")],
    password_stdin: PasswordStdinOpt = False,
    device_name: DeviceNameOpt = None,
    json_flag: JsonOpt = False,
) -> None:
    """Log in and keep the session for later commands."""
    app = get_app(ctx, json_flag)
    password = read_password(app, password_stdin, confirm=False)

    async def go(client: "MeloClient") -> dict[str, Any]:
        tokens = await client.login(username, password, device_name=device_name or default_device_name())
        await _publish_device_keys(app, client)
        return _login_document(app, client, tokens)

    doc = app.run(go)
    app.output.emit(
        doc,
        lambda: app.output.result(
            f"Logged in as {doc['username']} on {doc['server']} (session {doc['session_id']})"
        ),
    )


def logout(ctx: typer.Context, json_flag: JsonOpt = False) -> None:
    """End this session on the server and forget it here."""
    app = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        creds = client.credentials
        await client.logout()
        return {
            "server": client.server_url,
            "profile": app.profile,
            "username": creds.username if creds else None,
            "logged_out": True,
        }

    doc = app.run(go)
    app.output.emit(doc, lambda: app.output.result(f"Logged out {doc['username']} from {doc['server']}"))


def whoami(ctx: typer.Context, json_flag: JsonOpt = False) -> None:
    """Show the account and session this profile is logged in as."""
    app = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        me = await client.whoami()
        return {
            "server": client.server_url,
            "profile": app.profile,
            "id": me.id,
            "username": me.username,
            "display_name": me.display_name,
            "bio": me.bio,
            "is_admin": me.is_admin,
            "session_id": me.session_id,
            "device_id": me.device_id,
            "created_at": me.created_at.isoformat(),
        }

    doc = app.run(go)
    app.output.emit(
        doc,
        lambda: app.output.fields(
            [
                ("username", doc["username"]),
                ("display name", doc["display_name"]),
                ("admin", "yes" if doc["is_admin"] else "no"),
                ("server", doc["server"]),
                ("profile", doc["profile"]),
                ("session", doc["session_id"]),
                ("device", doc["device_id"]),
                ("created", doc["created_at"]),
            ]
        ),
    )
