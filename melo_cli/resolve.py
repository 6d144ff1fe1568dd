"""CHAT arguments → chat ids, for the commands that take a CHAT: the SDK's ``melo_protocol.client.resolve``
(the messenger actions use it too), imported when first used so that ``melo --help`` stays quick; and ids or
tokens given by a unique prefix (``melo sessions revoke 3f2a``)."""

from collections.abc import Iterable
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


def by_prefix(given: str, candidates: Iterable[str], *, what: str, not_found: str, ambiguous: str,
              min_length: int = 1, secret: bool = False) -> str:
    """The candidate ``given`` names: itself, or the one candidate it is a prefix of; else CliError (exit 1).

    An ambiguous prefix lists the candidates it matches, unless they are ``secret`` (tokens): then only
    how many.
    """
    from melo_cli.errors import CliError

    pool = sorted(set(candidates))
    if given in pool:
        return given
    if len(given) < min_length:
        raise CliError(f"give at least {min_length} characters of the {what}", code=not_found)
    matches = [c for c in pool if c.startswith(given)]
    if not matches:
        raise CliError(f"no {what} starts with that" if secret else f"no {what} starts with {given!r}",
                       code=not_found)
    if len(matches) > 1:
        listed = "" if secret else ": " + ", ".join(matches)
        raise CliError(f"{len(matches)} {what}s start with that; give more characters{listed}", code=ambiguous,
                       details=None if secret else {"candidates": matches})
    return matches[0]
