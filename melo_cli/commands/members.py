"""``melo members``: list, add, remove and change the role of a chat's members."""

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.options import ChatArg, JsonOpt, command_group, iso, short_time
from melo_cli.resolve import resolve_chat

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient
    from melo_protocol.wire.chats import MemberOut

app = command_group("Members of a chat (adding and removing needs a chat admin; changing roles, the owner).")

UserArg = Annotated[str, typer.Argument(metavar="USER", help="a username")]


class RoleChoice(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


def member_doc(member: "MemberOut") -> dict[str, Any]:
    return {
        "username": member.user.username,
        "user_id": member.user.id,
        "display_name": member.user.display_name,
        "role": str(member.role),
        "joined_at": iso(member.joined_at),
        "read_seq": member.read_seq,
        "delivered_seq": member.delivered_seq,
    }


@app.command("list")
def list_members(ctx: typer.Context, chat: ChatArg, json_flag: JsonOpt = False) -> None:
    """A chat's members and roles.

    JSON: {"chat_id", "members": [{"username", "user_id", "display_name", "role", "joined_at", "read_seq",
    "delivered_seq"}]}
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        chat_id = await resolve_chat(client, chat)
        return {"chat_id": chat_id, "members": [member_doc(m) for m in await client.list_members(chat_id)]}

    doc = application.run(go)
    out = application.output
    out.emit(
        doc,
        lambda: out.table(
            ["Username", "Display name", "Role", "Joined"],
            [[m["username"], m["display_name"], m["role"], short_time(m["joined_at"])] for m in doc["members"]],
            no_wrap=["Username"],
        ),
    )


@app.command("add")
def add(ctx: typer.Context, chat: ChatArg, user: UserArg, json_flag: JsonOpt = False) -> None:
    """Add USER to a group or channel."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        chat_id = await resolve_chat(client, chat)
        return {"chat_id": chat_id, **member_doc(await client.add_member(chat_id, user.removeprefix("@")))}

    doc = application.run(go)
    application.output.emit(
        doc, lambda: application.output.result(f"Added {doc['username']} to chat {doc['chat_id']} as {doc['role']}")
    )


@app.command("remove")
def remove(ctx: typer.Context, chat: ChatArg, user: UserArg, json_flag: JsonOpt = False) -> None:
    """Remove USER from a group or channel."""
    application = get_app(ctx, json_flag)
    username = user.removeprefix("@")

    async def go(client: "MeloClient") -> dict[str, Any]:
        chat_id = await resolve_chat(client, chat)
        await client.remove_member(chat_id, username)
        return {"chat_id": chat_id, "username": username, "removed": True}

    doc = application.run(go)
    application.output.emit(
        doc, lambda: application.output.result(f"Removed {username} from chat {doc['chat_id']}")
    )


@app.command("role")
def role(
    ctx: typer.Context,
    chat: ChatArg,
    user: UserArg,
    new_role: Annotated[RoleChoice, typer.Argument(metavar="ROLE", help="admin or member")],
    json_flag: JsonOpt = False,
) -> None:
    """Make USER an admin or a plain member (the owner's call; ownership moves with `melo chats transfer`)."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        chat_id = await resolve_chat(client, chat)
        member = await client.change_role(chat_id, user.removeprefix("@"), new_role.value)
        return {"chat_id": chat_id, **member_doc(member)}

    doc = application.run(go)
    application.output.emit(
        doc, lambda: application.output.result(f"{doc['username']} is now {doc['role']} of chat {doc['chat_id']}")
    )
