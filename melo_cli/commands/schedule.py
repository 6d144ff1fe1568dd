"""Scheduled and disappearing messages: ``melo send --at``, ``melo schedule list | cancel``, ``melo timer``.

Scheduled messages are sent by the server's scheduler at their time. In E2E chats the Messenger
encrypts when scheduling (the server never sees the text), so members who join before the send time
cannot read them. ``schedule list`` shows their text from this device's local cache (the device that
scheduled them), without opening the crypto store, so it works while ``melo listen`` runs.
"""

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import Application, get_app
from melo_cli.options import ChatArg, JsonOpt, command_group, parse_duration, short_time
from melo_protocol.timetext import human_duration

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient

app = command_group("Messages waiting to be sent at a set time (`melo send CHAT TEXT --at TIME` makes them).")


def schedule_message(application: Application, chat: str, text: str, send_at: datetime,
                     reply_to: int | None) -> None:
    """``melo send CHAT TEXT --at TIME``: the Messenger encrypts now (E2E chats); the server sends later."""
    doc = application.run_action("schedule", chat=chat, text=text, send_at=send_at.isoformat(), reply_to=reply_to)
    application.output.emit(doc, lambda: application.output.result(
        f"Scheduled message {doc['scheduled_id']} for {doc['send_at']} "
        f"(cancel with `melo schedule cancel {doc['scheduled_id']}`)"))


@app.command("list")
def list_scheduled(ctx: typer.Context, json_flag: JsonOpt = False) -> None:
    """Your messages not sent yet, soonest first (times in UTC).

    The text of an end-to-end encrypted one shows on the device that scheduled it (the server holds
    only its envelope); elsewhere it is null, shown as "(end-to-end encrypted)".

    JSON: {"scheduled": [{scheduled_id, chat_id, txn_id, send_at, created_at, text, e2e}]}
    """
    application = get_app(ctx, json_flag)

    labels: dict[int, str] = {}  # chat id → "Team", "@bob": the table names chats as people do

    async def go(client: "MeloClient") -> dict[str, Any]:
        from melo_cli.resolve import chat_label
        from melo_protocol.client.actions import scheduled_doc
        from melo_protocol.client.messenger import Messenger

        if client.credentials is None:  # not logged in here: the SDK says so, with the exit code for it
            return {"scheduled": [scheduled_doc(r) for r in await client.list_scheduled()]}
        messenger = Messenger.open(client, application.store())
        try:
            rows = await (messenger.list_scheduled() if messenger.open_cache() else client.list_scheduled())
        finally:
            await messenger.close()
        if rows and not application.json_mode:
            labels.update({c.id: chat_label(c) for c in await client.list_chats()})
        return {"scheduled": [scheduled_doc(r) for r in rows]}

    doc = application.run(go)
    out = application.output

    def human() -> None:
        if not doc["scheduled"]:
            out.result("No scheduled messages.")
            return
        out.table(["ID", "Chat", "Send at", "Text"],
                  [[r["scheduled_id"], labels.get(r["chat_id"], f"#{r['chat_id']}"), short_time(r["send_at"]),
                    r["text"] if r["text"] is not None else "(end-to-end encrypted)"] for r in doc["scheduled"]],
                  no_wrap=["ID", "Send at"])

    out.emit(doc, human)


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    scheduled_id: Annotated[int, typer.Argument(metavar="ID", help="a scheduled message id (`melo schedule list`)")],
    json_flag: JsonOpt = False,
) -> None:
    """Cancel a scheduled message that was not sent yet. JSON: {"scheduled_id", "cancelled": true}."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        await client.cancel_scheduled(scheduled_id)
        return {"scheduled_id": scheduled_id, "cancelled": True}

    doc = application.run(go)
    application.output.emit(doc, lambda: application.output.result(f"Cancelled scheduled message {scheduled_id}"))


def timer(
    ctx: typer.Context,
    chat: ChatArg,
    duration: Annotated[str, typer.Argument(
        metavar="DURATION|off",
        help="how long messages live after they are sent: 30s (at least 5s), 10m, 1h, 1d, 1w, 1h30m; "
             "0 or off ends it")],
    json_flag: JsonOpt = False,
) -> None:
    """Disappearing messages: messages sent from now on are deleted DURATION after sending.

    Either member of a direct chat sets it; owners and admins elsewhere. Members see a chat.updated
    event. JSON: {"chat_id", "seconds"} (seconds is null when off).
    """
    application = get_app(ctx, json_flag)
    seconds: int | None = None  # off
    if duration.strip().lower() != "off":
        try:
            seconds = parse_duration(duration) or None  # 0 turns it off, as `melo slowmode CHAT 0` does
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="DURATION") from None

    async def go(client: "MeloClient") -> dict[str, Any]:
        from melo_cli.resolve import resolve_chat

        result = await client.set_timer(await resolve_chat(client, chat), seconds)
        return {"chat_id": result.chat_id, "seconds": result.seconds}

    doc = application.run(go)

    def human() -> None:
        if doc["seconds"] is None:
            application.output.result(f"Disappearing messages are off in chat {doc['chat_id']}")
        else:
            application.output.result(f"Messages in chat {doc['chat_id']} now disappear "
                                      f"{human_duration(doc['seconds'])} after sending")

    application.output.emit(doc, human)
