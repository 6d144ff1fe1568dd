"""Messenger actions: the work of `melo send`, `history`, `edit`, `delete`, `react`, `pin`, `read` and
`send --at`, as ``fn(messenger, **params)`` returning the command's JSON document.

A command runs its action with its own Messenger, or, while another process holds the profile (`melo
listen`, `melo-tui`), has that process run it on its Messenger through the control socket
(``melo_protocol.client.control``). Both sides import them from here; the CLI keeps the printing.
"""

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from melo_protocol.client.resolve import resolve_chat

if TYPE_CHECKING:
    from melo_protocol.client import events as ev
    from melo_protocol.client.messenger import Messenger
    from melo_protocol.wire.jobs import ScheduledOut

MessengerAction = Callable[..., Awaitable[dict[str, Any]]]
ACTIONS: dict[str, MessengerAction] = {}


def messenger_action(name: str) -> Callable[[MessengerAction], MessengerAction]:
    """Register ``fn(messenger, **params) -> dict`` under ``name``: run here, or by the process holding the profile."""

    def register(fn: MessengerAction) -> MessengerAction:
        ACTIONS[name] = fn
        return fn

    return register


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def message_doc(message: "ev.Message") -> dict[str, Any]:
    """A decrypted message as stable JSON (the same keys in send, edit, history and listen)."""
    return {
        "message_id": message.id,
        "chat_id": message.chat_id,
        "seq": message.seq,
        "sender": message.sender,
        "sender_device": message.sender_device,
        "text": message.text,
        "status": message.status,
        "kind": message.kind,
        "created_at": _iso(message.created_at),
        "edited_at": _iso(message.edited_at),
        "reply_to": message.reply_to,
        "reactions": {emoji: list(users) for emoji, users in message.reactions.items()},
        "pinned": message.pinned,
        "verified": message.verified,
    }


def scheduled_doc(row: "ScheduledOut") -> dict[str, Any]:
    return {
        "scheduled_id": row.id,
        "chat_id": row.chat_id,
        "txn_id": row.txn_id,
        "send_at": _iso(row.send_at),
        "created_at": _iso(row.created_at),
        "text": row.text,
        "e2e": row.e2e is not None,
    }


@messenger_action("send")
async def send_action(m: "Messenger", chat: str, text: str, reply_to: int | None = None) -> dict[str, Any]:
    ref = chat.strip()
    if ref.startswith("@") and len(ref) > 1:  # the DM's id is remembered: a repeated send costs one request
        return message_doc(await m.send_text_to(ref[1:], text, reply_to=reply_to))
    chat_id = await resolve_chat(m.client, chat, create_dm=True)
    return message_doc(await m.send_text(chat_id, text, reply_to=reply_to))


@messenger_action("history")
async def history_action(m: "Messenger", chat: str, limit: int = 20) -> dict[str, Any]:
    chat_id = await resolve_chat(m.client, chat)
    messages = sorted(await m.history(chat_id, limit=limit), key=lambda msg: msg.seq)
    return {"chat_id": chat_id, "messages": [message_doc(msg) for msg in messages]}


@messenger_action("edit")
async def edit_action(m: "Messenger", chat: str, message_id: int, text: str) -> dict[str, Any]:
    chat_id = await resolve_chat(m.client, chat)
    return message_doc(await m.edit_text(chat_id, message_id, text))


@messenger_action("delete")
async def delete_action(m: "Messenger", chat: str, message_id: int) -> dict[str, Any]:
    chat_id = await resolve_chat(m.client, chat)
    await m.delete(chat_id, message_id)
    return {"deleted": True, "chat_id": chat_id, "message_id": message_id}


@messenger_action("react")
async def react_action(m: "Messenger", chat: str, message_id: int, emoji: str, remove: bool = False) -> dict[str, Any]:
    from melo_protocol.wire.chats import reaction_key

    chat_id = await resolve_chat(m.client, chat)
    with contextlib.suppress(ValueError):  # a refused one fails in m.react, with the SDK's message
        emoji = reaction_key(emoji)  # as the server stores it: ❤ is ❤️
    await m.react(chat_id, message_id, emoji, remove=remove)
    return {"chat_id": chat_id, "message_id": message_id, "emoji": emoji, "added": not remove}


@messenger_action("pin")
async def pin_action(m: "Messenger", chat: str, message_id: int, unpin: bool = False) -> dict[str, Any]:
    chat_id = await resolve_chat(m.client, chat)
    await m.pin(chat_id, message_id, unpin=unpin)
    return {"chat_id": chat_id, "message_id": message_id, "pinned": not unpin}


@messenger_action("read")
async def read_action(m: "Messenger", chat: str) -> dict[str, Any]:
    chat_id = await resolve_chat(m.client, chat)
    seq = (await m.chat(chat_id, refresh=True)).last_seq
    if seq:
        await m.mark_read(chat_id, seq)
    return {"chat_id": chat_id, "read_seq": seq}


@messenger_action("schedule")
async def schedule_action(m: "Messenger", chat: str, text: str, send_at: str,
                          reply_to: int | None = None) -> dict[str, Any]:
    chat_id = await resolve_chat(m.client, chat, create_dm=True)
    when = datetime.fromisoformat(send_at)
    return scheduled_doc(await m.schedule_text(chat_id, text, when, reply_to=reply_to))
