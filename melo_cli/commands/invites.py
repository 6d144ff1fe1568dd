"""``melo invites`` (create, list, revoke invite codes for a chat) and ``melo join CODE``.

Invite codes are meant to be shared, so they are printed; session tokens never are.
"""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from melo_cli.application import get_app
from melo_cli.options import ChatArg, JsonOpt, command_group, duration_seconds, iso, short_time
from melo_cli.resolve import resolve_chat

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient
    from melo_protocol.wire.chats import InviteOut

app = command_group("Invite codes for groups and channels (chat admins).")

CodeArg = Annotated[str, typer.Argument(metavar="CODE", help="an invite code")]


def invite_doc(invite: "InviteOut") -> dict[str, Any]:
    return {
        "code": invite.code,
        "chat_id": invite.chat_id,
        "created_at": iso(invite.created_at),
        "expires_at": iso(invite.expires_at),
        "max_uses": invite.max_uses,
        "uses": invite.uses,
        "revoked": invite.revoked,
    }


@app.command("create")
def create(
    ctx: typer.Context,
    chat: ChatArg,
    expires: Annotated[
        str | None,
        typer.Option("--expires", help="valid for e.g. 30m, 2h, 1d, 1w (default: forever)"),
    ] = None,
    max_uses: Annotated[int | None, typer.Option("--max-uses", min=1, help="how many people may join with it")] = None,
    json_flag: JsonOpt = False,
) -> None:
    """Create an invite code for CHAT; share it, others run `melo join CODE`.

    JSON keys: code, chat_id, created_at, expires_at, max_uses, uses, revoked.
    """
    application = get_app(ctx, json_flag)
    seconds = duration_seconds(expires, "--expires")

    async def go(client: "MeloClient") -> dict[str, Any]:
        chat_id = await resolve_chat(client, chat)
        return invite_doc(await client.create_invite(chat_id, seconds, max_uses))

    doc = application.run(go)
    out = application.output

    def human() -> None:
        limits = []
        if doc["expires_at"]:
            limits.append(f"expires {short_time(doc['expires_at'])} UTC")
        if doc["max_uses"]:
            limits.append(f"{doc['max_uses']} uses")
        out.info(f"Invite for chat {doc['chat_id']}" + (f" ({', '.join(limits)})" if limits else ""))
        out.out.print(doc["code"], markup=False)

    out.emit(doc, human)


@app.command("list")
def list_invites(ctx: typer.Context, chat: ChatArg, json_flag: JsonOpt = False) -> None:
    """CHAT's invite codes, with their uses and limits.

    JSON: {"chat_id", "invites": [{"code", "chat_id", "created_at", "expires_at", "max_uses", "uses", "revoked"}]}
    """
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        chat_id = await resolve_chat(client, chat)
        return {"chat_id": chat_id, "invites": [invite_doc(i) for i in await client.list_invites(chat_id)]}

    doc = application.run(go)
    out = application.output

    def status(i: dict[str, Any]) -> str:
        return "revoked" if i["revoked"] else "active"

    out.emit(
        doc,
        lambda: out.table(
            ["Code", "Uses", "Max uses", "Expires", "Status"],
            [[i["code"], i["uses"], i["max_uses"] or "∞", short_time(i["expires_at"]) or "never", status(i)]
             for i in doc["invites"]],
            no_wrap=["Code"],
        ),
    )


@app.command("revoke")
def revoke(ctx: typer.Context, code: CodeArg, json_flag: JsonOpt = False) -> None:
    """Revoke an invite code; nobody can join with it any more."""
    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        return invite_doc(await client.revoke_invite(code))

    doc = application.run(go)
    application.output.emit(doc, lambda: application.output.result(f"Revoked invite {doc['code']}"))


def join(ctx: typer.Context, code: CodeArg, json_flag: JsonOpt = False) -> None:
    """Join a group or channel with an invite code (JSON: the chat, as in `melo chats list`)."""
    from melo_cli.commands.chats import chat_doc, emit_chat

    application = get_app(ctx, json_flag)

    async def go(client: "MeloClient") -> dict[str, Any]:
        return chat_doc(await client.join_invite(code))

    doc = application.run(go)
    emit_chat(ctx, doc, f"Joined {doc['label']!r} (chat {doc['id']})")
