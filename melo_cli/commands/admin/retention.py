"""``melo admin retention``: how long a chat keeps its messages, and running retention now.

Both are destructive (a shorter retention deletes history for good at the next run): they ask on a
terminal, take --yes in scripts, and --dry-run says what would happen. Audited as retention.set / .run.
"""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.options import ChatArg, DryRunOpt, JsonOpt, YesOpt, command_group
from melo_cli.safety import guarded

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient

app = command_group("Message retention per chat (messages older than N days are deleted for good).")


@app.command("set")
def set_retention(
    ctx: typer.Context,
    chat: ChatArg,
    days: Annotated[str, typer.Argument(
        metavar="DAYS|default", help="keep N days (at least 1); default: the server's MELO_RETENTION_DAYS")],
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_flag: JsonOpt = False,
) -> None:
    """Keep only the last DAYS days of a chat's messages (older ones go at the next retention run).

    JSON: {"chat_id", "days" (null: the server default), "effective_days" (null: kept forever)}
    """
    application = get_app(ctx, json_flag)
    value: int | None = None
    if days.strip().lower() != "default":
        try:
            value = int(days)
        except ValueError:
            raise typer.BadParameter(f"{days!r} is not a number of days (or 'default')", param_hint="DAYS") from None
    what = "the server default" if value is None else f"{value} day{'s' if value != 1 else ''}"

    async def target(client: "MeloClient") -> int:
        from melo_cli.resolve import resolve_chat

        return await resolve_chat(client, chat)

    async def preview(client: "MeloClient") -> dict[str, Any]:
        return {"chat_id": await target(client), "days": value}

    async def perform(client: "MeloClient") -> dict[str, Any]:
        result = await client.admin_set_retention(await target(client), value)
        return {"chat_id": result.chat_id, "days": result.days, "effective_days": result.effective_days}

    doc = guarded(application, action="retention.set",
                  summary=lambda plan: f"set the retention of chat {plan['chat_id'] if plan else chat} to {what}",
                  yes=yes, dry_run=dry_run, preview=preview, perform=perform)
    kept = "forever" if doc["effective_days"] is None else f"{doc['effective_days']} days"
    application.output.emit(doc, lambda: application.output.result(
        f"Chat {doc['chat_id']} keeps messages for {kept}"))


@app.command("run")
def run(ctx: typer.Context, yes: YesOpt = False, dry_run: DryRunOpt = False, json_flag: JsonOpt = False) -> None:
    """Run retention now: delete messages older than each chat's retention, for good.

    JSON: {"purged": {"CHAT_ID": messages deleted}, "total": n}
    """
    application = get_app(ctx, json_flag)

    async def perform(client: "MeloClient") -> dict[str, Any]:
        purged = (await client.admin_run_retention()).purged
        return {"purged": purged, "total": sum(purged.values())}

    doc = guarded(application, action="retention.run",
                  summary=lambda plan: "delete every message older than its chat's retention, for good",
                  yes=yes, dry_run=dry_run, preview=None, perform=perform)
    application.output.emit(doc, lambda: application.output.result(
        f"Retention deleted {doc['total']} message(s) in {len(doc['purged'])} chat(s)"))
