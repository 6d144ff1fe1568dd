"""CHAT arguments → chat ids, for the commands that take a CHAT: the SDK's ``melo_protocol.client.resolve``
(the messenger actions use it too), imported when first used so that ``melo --help`` stays quick."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from melo_protocol.client import MeloClient
    from melo_protocol.wire.chats import ChatOut


def chat_label(chat: "ChatOut") -> str:
    """How people see a chat: the title of a group or channel, ``@peer`` for a DM."""
    from melo_protocol.client.resolve import chat_label as label

    return label(chat)


async def resolve_chat(client: "MeloClient", ref: str, *, create_dm: bool = False) -> int:
    """The chat id ``ref`` names (an id, @username or an exact title); unknown or ambiguous → ClientError (exit 1)."""
    from melo_protocol.client.resolve import resolve_chat as resolve

    return await resolve(client, ref, create_dm=create_dm)
