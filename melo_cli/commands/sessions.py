"""``melo sessions``: list and revoke this account's logged-in devices."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.options import command_group

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient

app = command_group("List and revoke this account's sessions (logged-in devices).")

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document instead of text")]


def _ts(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _short(iso: str | None) -> str:
    """"2026-01-02T03:04:05.6+00:00" -> "2026-01-02 03:04" for the human table (UTC, as the server sent)."""
    return iso[:16].replace("T", " ") if iso else ""


@app.command("list")
def list_sessions(ctx: typer.Context, json_flag: JsonOpt = False) -> None:
    """Active sessions; the current one is marked."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        sessions = await client.list_sessions()
        return {
            "sessions": [
                {
                    "id": s.id,
                    "device_id": s.device_id,
                    "device_name": s.device_name,
                    "created_at": _ts(s.created_at),
                    "last_seen_at": _ts(s.last_seen_at),
                    "ip": s.ip,
                    "user_agent": s.user_agent,
                    "current": s.current,
                }
                for s in sessions
            ]
        }

    doc = application.run(go)
    out = application.output
    out.emit(
        doc,
        lambda: out.table(
            ["", "ID", "Device", "Name", "Last seen", "IP"],
            [
                [
                    "*" if s["current"] else "",
                    s["id"],
                    s["device_id"],
                    s["device_name"],
                    _short(s["last_seen_at"] or s["created_at"]),
                    s["ip"],
                ]
                for s in doc["sessions"]
            ],
            no_wrap=["ID", "Device"],
        ),
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    session_id: Annotated[
        str, typer.Argument(metavar="ID", help="a session id from `melo sessions list`, or its first characters")
    ],
    json_flag: JsonOpt = False,
) -> None:
    """Revoke one session (revoking the current one logs this profile out).

    ID may be a unique prefix of the session id; an ambiguous one exits 1 listing the ids it matches.
    JSON: {"revoked": 1, "session_id", "was_current"}.
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        from melo_cli.resolve import by_prefix

        current = client.credentials.session_id if client.credentials else None
        full = by_prefix(session_id, [s.id for s in await client.list_sessions()], what="session",
                         not_found="session_not_found", ambiguous="ambiguous_session")
        await client.revoke_session(full)
        return {"revoked": 1, "session_id": full, "was_current": full == current}

    doc = application.run(go)
    suffix = " (this was the current session: logged out)" if doc["was_current"] else ""
    application.output.emit(doc, lambda: application.output.result(f"Revoked session {doc['session_id']}{suffix}"))


@app.command("revoke-all")
def revoke_all(
    ctx: typer.Context,
    include_current: Annotated[
        bool, typer.Option("--include-current", help="also revoke this session (logs this profile out)")
    ] = False,
    json_flag: JsonOpt = False,
) -> None:
    """Revoke every other session; with --include-current, this one too."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        n = await (client.revoke_all_sessions() if include_current else client.revoke_other_sessions())
        return {"revoked": n, "include_current": include_current}

    doc = application.run(go)
    noun = "session" if doc["revoked"] == 1 else "sessions"
    what = f"{noun}, including this one (logged out)" if include_current else f"other {noun}"
    application.output.emit(doc, lambda: application.output.result(f"Revoked {doc['revoked']} {what}"))
