"""Message commands: ``melo send | history | edit | delete | react | pin | read``.

All go through the SDK's Messenger, which encrypts and decrypts direct chats and groups end to end
(channels are plain text). Their work is the SDK's messenger actions (``melo_protocol.client.actions``),
run here or by the process holding the profile; this module checks the arguments and prints.
"""

import sys
from typing import Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.errors import ExitCode
from melo_cli.options import ChatArg, JsonOpt, short_time, when_option
from melo_protocol.timetext import WHEN_HELP

MessageIdArg = Annotated[int, typer.Argument(metavar="ID", help="a message id (from `melo history` or `melo listen`)")]


def shown_text(doc: dict[str, Any]) -> str:
    """What people see for a message: its text, or why there is none."""
    if doc["status"] == "ok":
        return doc["text"] or ""
    return {
        "deleted": "(deleted)",
        "waiting_for_key": "(waiting for the key to decrypt this message)",
        "undecryptable": "(this message could not be decrypted)",
    }.get(doc["status"], f"({doc['status']})")


def _read_text(text: str) -> str:
    if text != "-":
        return text
    data = sys.stdin.read()
    return data[:-1] if data.endswith("\n") else data


def _require_text(ctx: typer.Context, text: str) -> str:
    if not text.strip():
        get_app(ctx).fail("the message is empty", code="empty_message", exit_code=ExitCode.USAGE)
    return text


def send(
    ctx: typer.Context,
    chat: ChatArg,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="the message; - reads it from stdin")],
    reply_to: Annotated[int | None, typer.Option("--reply-to", metavar="ID", help="reply to this message")] = None,
    at: Annotated[str | None, typer.Option("--at", metavar="TIME", help=WHEN_HELP)] = None,
    json_flag: JsonOpt = False,
) -> None:
    """Send a message (end-to-end encrypted in direct chats and groups). @user starts the DM if needed.

    JSON: the sent message: {message_id, chat_id, seq, sender, text, status, created_at, reply_to, …}.
    With --at TIME the server sends it then (E2E chats: encrypted now, for the members of now; see
    `melo schedule list | cancel ID`); JSON: the scheduled message (the keys of `melo schedule list`).
    """
    application = get_app(ctx, json_flag)
    send_at = when_option(at)
    body = _require_text(ctx, _read_text(text))
    if send_at is not None:
        from melo_cli.commands.schedule import schedule_message

        schedule_message(application, chat, body, send_at, reply_to)
        return

    doc = application.run_action("send", chat=chat, text=body, reply_to=reply_to)
    application.output.emit(doc, lambda: application.output.result(f"Sent message {doc['message_id']}"))


def history(
    ctx: typer.Context,
    chat: ChatArg,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500, help="how many recent messages")] = 20,
    json_flag: JsonOpt = False,
) -> None:
    """The latest messages of a chat, decrypted, oldest first.

    JSON: {"chat_id": N, "messages": [message…]}; each message has
    message_id, chat_id, seq, sender, sender_device, text, status (ok, waiting_for_key, undecryptable,
    deleted), kind, created_at, edited_at, reply_to, reactions, pinned, verified.
    """
    application = get_app(ctx, json_flag)

    doc = application.run_action("history", chat=chat, limit=limit, to_device=True)
    out = application.output

    def human() -> None:
        if not doc["messages"]:
            out.result("No messages yet.")
            return
        rows = []
        for msg in doc["messages"]:
            flags = ("edited " if msg["edited_at"] else "") + ("pinned " if msg["pinned"] else "")
            reactions = " ".join(f"{e}{len(u)}" for e, u in msg["reactions"].items())
            rows.append([msg["message_id"], short_time(msg["created_at"]), msg["sender"], shown_text(msg),
                         (flags + reactions).strip()])
        out.table(["ID", "Time", "From", "Text", ""], rows, no_wrap=["ID", "Time"])

    out.emit(doc, human)


def edit(ctx: typer.Context, chat: ChatArg, message_id: MessageIdArg,
         text: Annotated[str, typer.Argument(metavar="TEXT", help="the new text; - reads it from stdin")],
         json_flag: JsonOpt = False) -> None:
    """Replace the text of one of your messages (re-encrypted in E2E chats).

    JSON: the edited message (the keys of `melo history`).
    """
    application = get_app(ctx, json_flag)
    body = _require_text(ctx, _read_text(text))

    doc = application.run_action("edit", chat=chat, message_id=message_id, text=body)
    application.output.emit(doc, lambda: application.output.result(f"Edited message {message_id}"))


def delete(ctx: typer.Context, chat: ChatArg, message_id: MessageIdArg, json_flag: JsonOpt = False) -> None:
    """Delete a message (yours, or any as a chat admin). JSON: {"deleted": true, "chat_id", "message_id"}."""
    application = get_app(ctx, json_flag)

    doc = application.run_action("delete", chat=chat, message_id=message_id)
    application.output.emit(doc, lambda: application.output.result(f"Deleted message {message_id}"))


def react(
    ctx: typer.Context,
    chat: ChatArg,
    message_id: MessageIdArg,
    emoji: Annotated[str, typer.Argument(metavar="EMOJI", help="the reaction: one emoji, e.g. 👍 🇫🇷 👩🏽‍💻")],
    remove: Annotated[bool, typer.Option("--remove", help="take your reaction back")] = False,
    json_flag: JsonOpt = False,
) -> None:
    """React to a message (or --remove your reaction). JSON: {"chat_id", "message_id", "emoji", "added"}."""
    application = get_app(ctx, json_flag)

    doc = application.run_action("react", chat=chat, message_id=message_id, emoji=emoji, remove=remove)
    verb = "Removed" if remove else "Added"
    application.output.emit(doc, lambda: application.output.result(f"{verb} {doc['emoji']} on message {message_id}"))


def pin(
    ctx: typer.Context,
    chat: ChatArg,
    message_id: MessageIdArg,
    unpin: Annotated[bool, typer.Option("--unpin", help="unpin it instead")] = False,
    json_flag: JsonOpt = False,
) -> None:
    """Pin a message in a chat (or --unpin it). JSON: {"chat_id", "message_id", "pinned"}."""
    application = get_app(ctx, json_flag)

    doc = application.run_action("pin", chat=chat, message_id=message_id, unpin=unpin)
    verb = "Unpinned" if unpin else "Pinned"
    application.output.emit(doc, lambda: application.output.result(f"{verb} message {message_id}"))


def read(ctx: typer.Context, chat: ChatArg, json_flag: JsonOpt = False) -> None:
    """Mark everything in a chat as read (others see the read receipt). JSON: {"chat_id", "read_seq"}."""
    application = get_app(ctx, json_flag)

    doc = application.run_action("read", chat=chat)
    application.output.emit(doc, lambda: application.output.result(f"Marked chat {doc['chat_id']} read"))
