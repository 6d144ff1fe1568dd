"""``melo listen``: the live, decrypted event stream, as readable lines or JSON lines for scripts."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.options import JsonOpt

if TYPE_CHECKING:
    from melo_protocol.client import events as ev
    from melo_protocol.client.messenger import Messenger

LISTEN_HELP = """Print live events (messages decrypted) until --count events, --timeout, or Ctrl-C.

Without --count or --timeout it runs until interrupted. Exit 0 when --count/--timeout is reached or on
SIGTERM, 4 when the session is revoked or the account banned (within a moment), 3 when the server is gone.

--json prints one JSON object per line. Every line has "type" and "chat_id" (null for events outside a
chat) and "seq". Types and their extra keys:

\b
  message.created, message.edited   message_id, sender, sender_device, text, status, kind,
                                    created_at, edited_at, reply_to, verified
  message.deleted                   message_id, by
  reaction.added, reaction.removed  message_id, user, emoji
  message.pinned, message.unpinned  message_id, by
  receipt                           user, read_seq, delivered_seq, read_message_id (the last
                                    message up to read_seq this device knows; null if none)
  typing                            user, typing
  presence                          user, online, last_seen
  member.joined|left|removed|role_changed   user, role, by
  chat.created, chat.updated        data
  key.warning                       user, device_id, reason
  verification                      user, device_id, state
  resync_required                   chat_ids

text is null unless status is "ok" (else waiting_for_key, undecryptable or deleted).

Meanwhile `melo send`, history, edit, delete, react, pin and read on this profile run inside this
process (a private control socket), so a script can listen and reply on one profile.
"""


def event_doc(event: "ev.Event") -> dict[str, Any] | None:
    """An SDK event as a stable JSON object (None for events scripts do not see, e.g. call signalling)."""
    from melo_protocol.client import events as ev
    from melo_protocol.client.actions import message_doc

    doc: dict[str, Any] = {"chat_id": event.chat_id, "seq": event.seq}
    if isinstance(event, ev.MessageReceived | ev.MessageEdited) and event.message is not None:
        kind = "message.created" if isinstance(event, ev.MessageReceived) else "message.edited"
        body = message_doc(event.message)
        body.pop("chat_id")
        body.pop("seq")
        return {"type": kind, **doc, **body}
    if isinstance(event, ev.MessageDeleted):
        return {"type": "message.deleted", **doc, "message_id": event.message_id, "by": event.by}
    if isinstance(event, ev.ReactionChanged):
        return {"type": "reaction.added" if event.added else "reaction.removed", **doc,
                "message_id": event.message_id, "user": event.user, "emoji": event.emoji}
    if isinstance(event, ev.PinChanged):
        return {"type": "message.pinned" if event.pinned else "message.unpinned", **doc,
                "message_id": event.message_id, "by": event.by}
    if isinstance(event, ev.ReceiptUpdated):
        return {"type": "receipt", **doc, "user": event.user, "read_seq": event.read_seq,
                "delivered_seq": event.delivered_seq}
    if isinstance(event, ev.Typing):
        return {"type": "typing", **doc, "user": event.user, "typing": event.typing}
    if isinstance(event, ev.Presence):
        return {"type": "presence", **doc, "user": event.user, "online": event.online,
                "last_seen": event.last_seen.isoformat() if event.last_seen else None}
    if isinstance(event, ev.MemberChanged):
        return {"type": f"member.{event.change}", **doc, "user": event.user, "role": event.role, "by": event.by}
    if isinstance(event, ev.ChatChanged):
        return {"type": f"chat.{event.change}", **doc, "data": event.data}
    if isinstance(event, ev.KeyWarning):
        return {"type": "key.warning", **doc, "user": event.user, "device_id": event.device_id,
                "reason": event.reason}
    if isinstance(event, ev.VerificationUpdate):
        return {"type": "verification", **doc, "user": event.user, "device_id": event.device_id,
                "state": event.state}
    if isinstance(event, ev.ResyncRequired):
        return {"type": "resync_required", **doc, "chat_ids": list(event.chat_ids)}
    return None


def human_line(doc: dict[str, Any], label: str) -> str:
    """One readable line per event (plain text: the caller prints it as a rich Text, never as markup)."""
    from melo_cli.commands.messages import shown_text

    kind = doc["type"]
    where = f"[{label}]"
    if kind == "message.created":
        reply = f" (reply to {doc['reply_to']})" if doc["reply_to"] else ""
        return f"{where} #{doc['message_id']} {doc['sender']}{reply}: {shown_text(doc)}"
    if kind == "message.edited":
        return f"{where} #{doc['message_id']} {doc['sender']} (edited): {shown_text(doc)}"
    if kind == "message.deleted":
        return f"{where} #{doc['message_id']} deleted by {doc['by']}"
    if kind.startswith("reaction."):
        verb = "reacted" if kind == "reaction.added" else "removed reaction"
        return f"{where} {doc['user']} {verb} {doc['emoji']} on #{doc['message_id']}"
    if kind.startswith("message.") and kind.endswith("pinned"):
        return f"{where} {doc['by']} {kind.split('.')[1]} #{doc['message_id']}"
    if kind == "receipt":
        upto = doc.get("read_message_id")
        position = f"message #{upto}" if upto is not None else f"seq {doc['read_seq']}"
        return f"{where} {doc['user']} read up to {position}"
    if kind == "typing":
        return f"{where} {doc['user']} {'is typing…' if doc['typing'] else 'stopped typing'}"
    if kind == "presence":
        return f"{doc['user']} is {'online' if doc['online'] else 'offline'}"
    if kind.startswith("member."):
        by = f" (by {doc['by']})" if doc["by"] and doc["by"] != doc["user"] else ""
        change = {"member.role_changed": f"is now {doc['role']}", "member.removed": "was removed"}.get(
            kind, kind.split(".")[1].replace("_", " "))
        return f"{where} {doc['user']} {change}{by}"
    if kind.startswith("chat."):
        return f"{where} chat {kind.split('.')[1]}"
    if kind == "key.warning":
        return f"WARNING: {doc['user']}'s device {doc['device_id']}: {doc['reason'].replace('_', ' ')}"
    if kind == "verification":
        return f"verification with {doc['user']} ({doc['device_id']}): {doc['state']}"
    return f"{kind}: {doc}"


def listen(
    ctx: typer.Context,
    chat: Annotated[
        str | None, typer.Option("--chat", metavar="CHAT", help="only this chat (id, @user or title)")
    ] = None,
    count: Annotated[int | None, typer.Option("--count", "-n", min=1, help="exit 0 after N events")] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0, help="exit 0 after S seconds")
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option("--type", metavar="TYPE", help="only events of this type (repeatable), e.g. message.created"),
    ] = None,
    json_flag: JsonOpt = False,
) -> None:
    application = get_app(ctx, json_flag)
    out = application.output

    async def go(m: "Messenger") -> int:
        import asyncio
        import contextlib
        import json
        import sys

        from rich.text import Text

        from melo_cli.resolve import chat_label, resolve_chat
        from melo_protocol.client import MeloError
        from melo_protocol.client import events as ev

        only = await resolve_chat(m.client, chat) if chat is not None else None
        labels: dict[int, str] = {}
        with_labels = not out.json_mode
        if with_labels:
            labels = {c.id: chat_label(c) for c in await m.client.list_chats()}
        seen = 0

        async def label(chat_id: int | None) -> str:
            if chat_id is None:
                return "-"
            if chat_id not in labels:
                try:
                    labels[chat_id] = chat_label(await m.chat(chat_id, refresh=True))
                except MeloError:
                    labels[chat_id] = f"#{chat_id}"
            return labels[chat_id]

        async def consume() -> None:
            nonlocal seen
            async for event in m.events():
                if isinstance(event, ev.ConnectionState):
                    if event.state == "reconnecting":
                        out.warn("connection lost; reconnecting…")
                    continue
                doc = event_doc(event)
                if doc is None or (only is not None and doc["chat_id"] != only):
                    continue
                if types and doc["type"] not in types:
                    continue
                if doc["type"] == "receipt":  # the seq in message ids, as every other line names messages
                    doc["read_message_id"] = (m.cache.message_id_at(doc["chat_id"], doc["read_seq"])
                                              if m.cache is not None and doc["read_seq"] else None)
                if out.json_mode:
                    sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
                    sys.stdout.flush()
                else:
                    out.out.print(Text(human_line(doc, await label(doc["chat_id"]))))
                seen += 1
                if count is not None and seen >= count:
                    return

        async def until_stopped() -> None:
            """consume() until it ends or SIGTERM asks us to stop (a service manager's stop: exit 0)."""
            import signal

            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            with contextlib.suppress(NotImplementedError):  # not on Windows
                loop.add_signal_handler(signal.SIGTERM, stop.set)
            consumer, stopper = asyncio.ensure_future(consume()), asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({consumer, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                with contextlib.suppress(NotImplementedError):
                    loop.remove_signal_handler(signal.SIGTERM)
                for task in (consumer, stopper):
                    task.cancel()
                await asyncio.wait({consumer, stopper})
            if not consumer.cancelled():
                consumer.result()  # its error (a revoked session, a lost server) is ours

        from melo_protocol.client.control import serving

        deadline = asyncio.timeout(timeout)
        try:
            # meanwhile `melo send`, `read`, `react`… on this profile run here (melo_protocol.client.control)
            async with serving(m, application.store()), deadline:
                if out.verbosity >= 0:  # on stderr even with --json: scripts may wait for it before sending
                    out.err.print("melo: listening (Ctrl-C to stop)", markup=False)
                await until_stopped()
        except TimeoutError:
            if not deadline.expired():
                raise
        return seen

    application.run_messenger(go, live=True)


listen.__doc__ = LISTEN_HELP
