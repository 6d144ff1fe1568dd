"""CHAT arguments → chat ids: an id, ``@username`` (your direct chat with them), or an exact title.

How scripts name chats: every `melo` command that takes a CHAT, and the messenger actions
(``melo_protocol.client.actions``) that `melo listen` and `melo-tui` run for them.
"""

from typing import TYPE_CHECKING

from melo_protocol.client.errors import ClientError

if TYPE_CHECKING:
    from melo_protocol.client.rest import MeloClient
    from melo_protocol.wire.chats import ChatOut


def chat_label(chat: "ChatOut") -> str:
    """How people see a chat: the title of a group or channel, ``@peer`` for a DM."""
    if chat.kind == "direct":
        return f"@{chat.peer.username}" if chat.peer else "(direct)"
    return chat.title or f"#{chat.id}"


async def resolve_chat(client: "MeloClient", ref: str, *, create_dm: bool = False) -> int:
    """The chat id ``ref`` names, among the caller's chats. Unknown or ambiguous → ClientError."""
    text = ref.strip()
    if text.isdigit():
        return int(text)  # the server answers chat_not_found for ids that are not ours
    chats = await client.list_chats()
    if text.startswith("@"):
        username = text[1:].lower()
        for chat in chats:
            if chat.kind == "direct" and chat.peer is not None and chat.peer.username.lower() == username:
                return chat.id
        if create_dm and username:
            return (await client.create_direct(username)).id
        raise ClientError(
            "chat_not_found",
            f"you have no direct chat with @{username}; start one with `melo chats dm {username}`",
        )
    matches = [c for c in chats if c.kind != "direct" and c.title == text]
    if not matches:
        raise ClientError(
            "chat_not_found",
            f"none of your groups or channels is titled {text!r}; see `melo chats list` for ids",
        )
    if len(matches) > 1:
        ids = sorted(c.id for c in matches)
        raise ClientError(
            "ambiguous_chat",
            f"{len(ids)} of your chats are titled {text!r}: ids {', '.join(map(str, ids))}; give the id instead",
            details={"ids": ids},
        )
    return matches[0].id
