"""``melo admin users``: list, show, ban, unban, deactivate, reset-password, promote, demote."""

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import Application, get_app
from melo_cli.errors import ExitCode
from melo_cli.options import DryRunOpt, JsonOpt, YesOpt, command_group, iso, short_time, yes_no
from melo_cli.safety import guarded, stdout_is_tty

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient
    from melo_protocol.wire import AdminUserSummary

app = command_group("Accounts: find, inspect, ban, deactivate, reset passwords, grant admin.")

UserArg = Annotated[str, typer.Argument(metavar="USER", help="a username")]
USER_KEYS = "id, username, display_name, is_admin, status (active|banned|deactivated), banned, deactivated, " \
    "created_at, last_seen_at"


def user_doc(user: "AdminUserSummary") -> dict[str, Any]:
    status = "deactivated" if user.deactivated else "banned" if user.banned else "active"
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "is_admin": user.is_admin,
        "status": status,
        "banned": user.banned,
        "deactivated": user.deactivated,
        "created_at": iso(user.created_at),
        "last_seen_at": iso(user.last_seen_at),
    }


async def preview_user(client: "MeloClient", username: str) -> dict[str, Any]:
    detail = await client.admin_show_user(username)
    return {"target": detail.username, "user": user_doc(detail), "active_sessions": len(detail.sessions)}


def _sessions_phrase(plan: dict[str, Any] | None) -> str:
    if plan is None:
        return "revoke its sessions"
    n = plan["active_sessions"]
    return f"revoke its {n} active session{'s' if n != 1 else ''}"


def _emit_user(application: Application, doc: dict[str, Any], headline: str) -> None:
    application.output.emit(doc, lambda: application.output.result(headline))


@app.command("list")
def list_users(
    ctx: typer.Context,
    search: Annotated[str | None, typer.Option("--search", help="only usernames or display names containing S")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="at most N users")] = 100,
    offset: Annotated[int, typer.Option("--offset", min=0, help="skip the first N")] = 0,
    json_flag: JsonOpt = False,
) -> None:
    """Accounts on this server.

    JSON: {"users": [user…]}; each user has id, username, display_name, is_admin, status, banned, deactivated,
    created_at, last_seen_at.
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        found = await client.admin_list_users(search, limit, offset)
        return {"users": [user_doc(u) for u in found.users]}

    doc = application.run(go)
    out = application.output
    out.emit(
        doc,
        lambda: out.table(
            ["ID", "Username", "Display name", "Admin", "Status", "Created", "Last seen"],
            [
                [u["id"], u["username"], u["display_name"], yes_no(u["is_admin"]), u["status"],
                 short_time(u["created_at"]), short_time(u["last_seen_at"])]
                for u in doc["users"]
            ],
            no_wrap=["Username"],
        ),
    )


@app.command("show")
def show(ctx: typer.Context, user: UserArg, json_flag: JsonOpt = False) -> None:
    """One account with its ban reason and active sessions.

    JSON: the keys of `admin users list`, plus ban_reason and sessions [{id, device_id, device_name,
    created_at, last_seen_at, ip, user_agent}].
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        detail = await client.admin_show_user(user)
        return {
            **user_doc(detail),
            "ban_reason": detail.ban_reason,
            "sessions": [
                {
                    "id": s.id,
                    "device_id": s.device_id,
                    "device_name": s.device_name,
                    "created_at": iso(s.created_at),
                    "last_seen_at": iso(s.last_seen_at),
                    "ip": s.ip,
                    "user_agent": s.user_agent,
                }
                for s in detail.sessions
            ],
        }

    doc = application.run(go)
    out = application.output

    def human() -> None:
        pairs: list[tuple[str, Any]] = [
            ("username", doc["username"]),
            ("id", doc["id"]),
            ("display name", doc["display_name"]),
            ("admin", yes_no(doc["is_admin"])),
            ("status", doc["status"]),
        ]
        if doc["ban_reason"]:
            pairs.append(("ban reason", doc["ban_reason"]))
        pairs += [("created", doc["created_at"]), ("last seen", doc["last_seen_at"]),
                  ("sessions", len(doc["sessions"]))]
        out.fields(pairs)
        if doc["sessions"]:
            out.table(
                ["Session", "Device", "Name", "Last seen", "IP"],
                [[s["id"], s["device_id"], s["device_name"], short_time(s["last_seen_at"] or s["created_at"]),
                  s["ip"]] for s in doc["sessions"]],
                no_wrap=["Session", "Device"],
            )

    out.emit(doc, human)


def _guarded_user_change(
    application: Application,
    user: str,
    action: str,
    change: Callable[["MeloClient"], Awaitable["AdminUserSummary"]],
    *,
    summary: Callable[[dict[str, Any] | None], str],
    done: str,
    yes: bool,
    dry_run: bool,
) -> None:
    """A change to one account behind the admin guard (preview, confirm or --yes, --dry-run), then its
    result; ``done`` is formatted with the account's fields."""

    async def perform(client: "MeloClient") -> dict[str, Any]:
        return user_doc(await change(client))

    doc = guarded(application, action=action, summary=summary, yes=yes, dry_run=dry_run,
                  preview=lambda client: preview_user(client, user), perform=perform)
    _emit_user(application, doc, done.format(**doc))


@app.command("ban")
def ban(
    ctx: typer.Context,
    user: UserArg,
    reason: Annotated[str | None, typer.Option("--reason", help="why (kept with the ban, shown to admins)")] = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_flag: JsonOpt = False,
) -> None:
    """Ban USER: every session ends at once and they cannot log in until unbanned."""
    _guarded_user_change(
        get_app(ctx, json_flag), user, "users.ban", lambda client: client.admin_ban(user, reason),
        summary=lambda plan: f"ban {user} and {_sessions_phrase(plan)}", done="Banned {username}",
        yes=yes, dry_run=dry_run,
    )


@app.command("unban")
def unban(ctx: typer.Context, user: UserArg, json_flag: JsonOpt = False) -> None:
    """Lift USER's ban (they log in again; their old sessions stay ended)."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        return user_doc(await client.admin_unban(user))

    doc = application.run(go)
    _emit_user(application, doc, f"Unbanned {doc['username']}")


@app.command("deactivate")
def deactivate(
    ctx: typer.Context, user: UserArg, yes: YesOpt = False, dry_run: DryRunOpt = False, json_flag: JsonOpt = False
) -> None:
    """Deactivate USER's account for good: sessions end and the account cannot log in."""
    _guarded_user_change(
        get_app(ctx, json_flag), user, "users.deactivate", lambda client: client.admin_deactivate(user),
        summary=lambda plan: f"deactivate {user} and {_sessions_phrase(plan)}", done="Deactivated {username}",
        yes=yes, dry_run=dry_run,
    )


@app.command("promote")
def promote(ctx: typer.Context, user: UserArg, json_flag: JsonOpt = False) -> None:
    """Make USER a server admin."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        return user_doc(await client.admin_promote(user))

    doc = application.run(go)
    _emit_user(application, doc, f"{doc['username']} is now a server admin")


@app.command("demote")
def demote(
    ctx: typer.Context, user: UserArg, yes: YesOpt = False, dry_run: DryRunOpt = False, json_flag: JsonOpt = False
) -> None:
    """Take server admin rights away from USER."""
    _guarded_user_change(
        get_app(ctx, json_flag), user, "users.demote", lambda client: client.admin_demote(user),
        summary=lambda plan: f"remove the server admin role from {user}",
        done="{username} is no longer a server admin", yes=yes, dry_run=dry_run,
    )


def write_secret_file(path: Path, secret: str) -> None:
    """Write ``secret`` to ``path`` readable by the owner only (0600 from creation; no symlink followed)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, 0o600)  # an existing file keeps its mode on open: narrow it
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret + "\n")


@app.command("reset-password")
def reset_password(
    ctx: typer.Context,
    user: UserArg,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="use the first line of stdin, not a generated password")
    ] = False,
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", dir_okay=False, help="write the generated password to PATH (mode 0600)"),
    ] = None,
    show_password: Annotated[
        bool, typer.Option("--show-password", help="print the generated password even when stdout is not a terminal")
    ] = False,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_flag: JsonOpt = False,
) -> None:
    """Set a new password for USER and end all their sessions.

    By default the server generates a temporary password. It is a secret, so it is printed only when
    stdout is a terminal or with --show-password; with --password-file PATH it is written there (0600)
    instead. Without a terminal and without either option the command refuses before changing anything,
    so a generated password is never lost in a pipe or a CI log. JSON: username, sessions_revoked,
    password_generated, and temporary_password (only when shown) or password_file.
    """
    application = get_app(ctx, json_flag)
    generated = not password_stdin
    show = show_password or (stdout_is_tty() and password_file is None)
    if generated and not dry_run and password_file is None and not show:
        application.fail(
            "stdout is not a terminal, so the generated password would end up in a pipe or a log: "
            "pass --password-file PATH (written 0600) or --show-password",
            code="password_destination_required",
            exit_code=ExitCode.USAGE,
        )
    if password_file is not None and not dry_run:
        parent = password_file.parent if str(password_file.parent) else Path(".")
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            application.fail(f"cannot write {password_file}: no writable directory {parent}", code="bad_path")
    new_password: str | None = None
    if password_stdin and not dry_run:
        from melo_cli.commands.account import read_password

        new_password = read_password(application, True, confirm=False)

    async def perform(client: "MeloClient") -> dict[str, Any]:
        result = await client.admin_reset_password(user, new_password)
        return {"username": result.username, "sessions_revoked": result.sessions_revoked,
                "secret": result.temporary_password}

    res = guarded(
        application,
        action="users.reset_password",
        summary=lambda plan: f"reset the password of {user} and {_sessions_phrase(plan)}",
        yes=yes,
        dry_run=dry_run,
        preview=lambda client: preview_user(client, user),
        perform=perform,
    )
    secret = res.pop("secret")
    doc: dict[str, Any] = {**res, "password_generated": generated}
    if secret is not None and password_file is not None:
        write_secret_file(password_file, secret)
        doc["password_file"] = str(password_file)
    if secret is not None and show:
        doc["temporary_password"] = secret
    out = application.output

    def human() -> None:
        out.result(f"Reset the password of {doc['username']}; revoked {doc['sessions_revoked']} session(s)")
        if "password_file" in doc:
            out.result(f"Temporary password written to {doc['password_file']} (mode 0600)")
        if "temporary_password" in doc:
            out.out.print(f"Temporary password: {doc['temporary_password']}", markup=False)

    out.emit(doc, human)
