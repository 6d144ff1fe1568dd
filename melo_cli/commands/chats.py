"""``melo chats`` (list, dm, create-group, create-channel, info, leave, transfer) and ``melo slowmode``."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.errors import CliError
from melo_cli.options import ChatArg, DryRunOpt, JsonOpt, YesOpt, command_group, iso, parse_duration, short_time
from melo_cli.resolve import chat_label, resolve_chat
from melo_cli.safety import guarded

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient
    from melo_protocol.wire.chats import ChatOut

app = command_group("Your chats: list them, start a direct chat, create groups and channels, leave.\n\n"
    "CHAT is a chat id, @username (your direct chat with them) or the exact title of your group or channel.")

def chat_doc(chat: "ChatOut") -> dict[str, Any]:
    """A chat as stable JSON; message contents are left to the message commands (they decrypt)."""
    return {
        "id": chat.id,
        "kind": str(chat.kind),
        "title": chat.title,
        "label": chat_label(chat),
        "description": chat.description,
        "e2e": chat.e2e,
        "role": str(chat.role) if chat.role is not None else None,
        "member_count": chat.member_count,
        "unread_count": chat.unread_count,
        "last_seq": chat.last_seq,
        "slow_mode_seconds": chat.slow_mode_seconds,
        "peer": chat.peer.username if chat.peer is not None else None,
        "created_at": iso(chat.created_at),
        "last_message_at": iso(chat.last_message.created_at) if chat.last_message is not None else None,
    }


def _chat_fields(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = [
        ("id", doc["id"]),
        ("kind", doc["kind"]),
        ("chat", doc["label"]),
    ]
    if doc["description"]:
        pairs.append(("description", doc["description"]))
    pairs += [
        ("encrypted", "end-to-end" if doc["e2e"] else "at rest (server key)"),
        ("your role", doc["role"]),
        ("members", doc["member_count"]),
        ("unread", doc["unread_count"]),
        ("slow mode", f"{doc['slow_mode_seconds']} s" if doc["slow_mode_seconds"] else "off"),
        ("created", doc["created_at"]),
    ]
    return pairs


def emit_chat(ctx: typer.Context, doc: dict[str, Any], headline: str) -> None:
    application = get_app(ctx)
    out = application.output

    def human() -> None:
        out.result(headline)
        if out.verbosity >= 0:
            out.fields(_chat_fields(doc))

    out.emit(doc, human)


@app.command("list")
def list_chats(ctx: typer.Context, json_flag: JsonOpt = False) -> None:
    """Every chat you belong to, most recently active first.

    JSON: {"chats": [chat…]}; each chat has id, kind, title, label, description, e2e, role, member_count,
    unread_count, last_seq, slow_mode_seconds, peer, created_at, last_message_at.
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        return {"chats": [chat_doc(c) for c in await client.list_chats()]}

    doc = application.run(go)
    out = application.output

    def human() -> None:
        if not doc["chats"]:
            out.result("No chats yet: `melo chats dm USER` or `melo chats create-group NAME`.")
            return
        out.table(
            ["ID", "Kind", "Chat", "Role", "Members", "Unread", "Last message"],
            [
                [c["id"], c["kind"], c["label"], c["role"], c["member_count"], c["unread_count"] or "",
                 short_time(c["last_message_at"])]
                for c in doc["chats"]
            ],
            no_wrap=["ID"],
        )

    out.emit(doc, human)


@app.command("dm")
def dm(
    ctx: typer.Context,
    user: Annotated[str, typer.Argument(metavar="USER", help="the other user's name")],
    json_flag: JsonOpt = False,
) -> None:
    """Open (or find) your end-to-end encrypted direct chat with USER."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        return chat_doc(await client.create_direct(user.removeprefix("@")))

    doc = application.run(go)
    emit_chat(ctx, doc, f"Direct chat {doc['id']} with {doc['label']}")


@app.command("create-group")
def create_group(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="the group's title")],
    member: Annotated[list[str] | None, typer.Option("--member", "-m", help="add USER (repeatable)")] = None,
    description: Annotated[str | None, typer.Option("--description", help="what the group is for")] = None,
    json_flag: JsonOpt = False,
) -> None:
    """Create an end-to-end encrypted group; you are its owner."""
    application = get_app(ctx, json_flag)
    members = [m.removeprefix("@") for m in member or []]

    async def go(client: "MeloClient") -> dict[str, Any]:
        return chat_doc(await client.create_chat("group", name, members, description))

    doc = application.run(go)
    emit_chat(ctx, doc, f"Created group {doc['label']!r} (id {doc['id']})")


@app.command("create-channel")
def create_channel(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="the channel's title")],
    description: Annotated[str | None, typer.Option("--description", help="what the channel is for")] = None,
    json_flag: JsonOpt = False,
) -> None:
    """Create a broadcast channel (owner and admins post, members read; encrypted at rest, not E2E)."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        return chat_doc(await client.create_chat("channel", name, [], description))

    doc = application.run(go)
    emit_chat(ctx, doc, f"Created channel {doc['label']!r} (id {doc['id']})")


@app.command("info")
def info(ctx: typer.Context, chat: ChatArg, json_flag: JsonOpt = False) -> None:
    """Details of one chat (JSON: the keys of `melo chats list`)."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        return chat_doc(await client.get_chat(await resolve_chat(client, chat)))

    doc = application.run(go)
    out = application.output
    out.emit(doc, lambda: out.fields(_chat_fields(doc)))


@app.command("leave")
def leave(ctx: typer.Context, chat: ChatArg, json_flag: JsonOpt = False) -> None:
    """Leave a group or channel (its last owner must `melo chats transfer` first)."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        chat_id = await resolve_chat(client, chat)
        await client.leave_chat(chat_id)
        return {"chat_id": chat_id, "left": True}

    doc = application.run(go)
    application.output.emit(doc, lambda: application.output.result(f"Left chat {doc['chat_id']}"))


@app.command("transfer")
def transfer(
    ctx: typer.Context,
    chat: ChatArg,
    user: Annotated[str, typer.Argument(metavar="USER", help="the member who becomes owner")],
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    json_flag: JsonOpt = False,
) -> None:
    """Hand ownership of a group or channel to USER (you become an admin).

    Asks for confirmation on a terminal; --yes in scripts; --dry-run shows what would happen.
    JSON: {"chat_id", "owner"}; with --dry-run {"dry_run": true, "action", "would", "chat_id", "chat", "owner"}.
    """
    application = get_app(ctx, json_flag)
    username = user.removeprefix("@")

    async def preview(client: "MeloClient") -> dict[str, Any]:
        chat_id = await resolve_chat(client, chat)
        found = await client.get_chat(chat_id)
        members = {m.user.username.lower() for m in await client.list_members(chat_id)}
        if username.lower() not in members:
            raise CliError(f"{username} is not a member of {chat_label(found)}: add them first "
                           f"(`melo members add {chat} {username}`)", code="not_a_member")
        return {"chat_id": chat_id, "chat": chat_label(found), "owner": username}

    async def perform(client: "MeloClient") -> dict[str, Any]:
        chat_id = await resolve_chat(client, chat)
        await client.transfer_chat(chat_id, username)
        return {"chat_id": chat_id, "owner": username}

    doc = guarded(
        application,
        action="chats.transfer",
        summary=lambda plan: (f"make {username} the owner of {(plan or {}).get('chat', chat)} "
                              "(you stay as an admin)"),
        yes=yes,
        dry_run=dry_run,
        preview=preview,
        perform=perform,
    )
    application.output.emit(
        doc, lambda: application.output.result(f"{doc['owner']} now owns chat {doc['chat_id']}")
    )


def _slowmode_seconds(value: str) -> int:
    if value.strip().lower() == "off":
        return 0
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="SECONDS") from None


def slowmode(
    ctx: typer.Context,
    chat: ChatArg,
    seconds: Annotated[
        str, typer.Argument(metavar="SECONDS", help="seconds between a member's posts (30, 30s, 5m, 1h); 0 or off")
    ],
    json_flag: JsonOpt = False,
) -> None:
    """Set a group's or channel's slow mode (chat admins; owners and admins are never slowed)."""
    application = get_app(ctx, json_flag)
    value = _slowmode_seconds(seconds)

    async def go(client: "MeloClient") -> dict[str, Any]:
        chat_id = await resolve_chat(client, chat)
        updated = await client.update_chat(chat_id, slow_mode_seconds=value)
        return {"chat_id": updated.id, "slow_mode_seconds": updated.slow_mode_seconds}

    doc = application.run(go)
    state = f"{doc['slow_mode_seconds']} s" if doc["slow_mode_seconds"] else "off"
    application.output.emit(
        doc, lambda: application.output.result(f"Slow mode of chat {doc['chat_id']}: {state}")
    )
