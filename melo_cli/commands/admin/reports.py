"""``melo admin stats`` and ``melo admin audit``: read-only reports."""

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.options import JsonOpt, iso, short_time

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient


def stats(ctx: typer.Context, json_flag: JsonOpt = False) -> None:
    """Counts of users, admins, bans, sessions and messages.

    JSON keys: users, active_users, admins, banned_users, sessions, messages.
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        s = await client.admin_stats()
        return {"users": s.users, "active_users": s.active_users, "admins": s.admins,
                "banned_users": s.banned_users, "sessions": s.sessions, "messages": s.messages}

    doc = application.run(go)
    out = application.output
    out.emit(doc, lambda: out.fields([(k.replace("_", " "), v) for k, v in doc.items()]))


def audit(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="at most N entries")] = 50,
    action: Annotated[str | None, typer.Option("--action", help="only this action, e.g. users.ban")] = None,
    json_flag: JsonOpt = False,
) -> None:
    """The admin audit log, newest first.

    JSON: {"entries": [{"id", "created_at", "actor", "action", "target", "outcome", "details"}]}
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        entries = (await client.admin_audit(limit, action)).entries
        return {
            "entries": [
                {"id": e.id, "created_at": iso(e.created_at), "actor": e.actor, "action": e.action,
                 "target": e.target, "outcome": e.outcome, "details": e.details}
                for e in entries
            ]
        }

    doc = application.run(go)
    out = application.output
    out.emit(
        doc,
        lambda: out.table(
            ["When", "Actor", "Action", "Target", "Outcome", "Details"],
            [[short_time(e["created_at"]), e["actor"], e["action"], e["target"], e["outcome"],
              json.dumps(e["details"], ensure_ascii=False) if e["details"] else ""] for e in doc["entries"]],
        ),
    )
