"""Slash commands typed in the composer: parsing only (pure), the chat screen carries them out."""

from dataclasses import dataclass

from melo_protocol.timetext import parse_duration

COMMANDS = {
    "react": "/react EMOJI — react to the last message",
    "edit": "/edit TEXT — edit your last message",
    "delete": "/delete — delete your last message",
    "pin": "/pin — pin the last message (/pin off to unpin)",
    "reply": "/reply TEXT — reply to the last message from someone else",
    "invite": "/invite [USER] — add USER, or create an invite code",
    "leave": "/leave — leave this chat",
    "verify": "/verify [USER] — compare safety numbers",
    "me": "/me ACTION — send an emote",
    "call": "/call — call the person of this direct chat",
    "timer": "/timer DURATION|off — messages here disappear DURATION (30s, 10m, 1h, 1d, 1w) after sending",
    "schedule": "/schedule WHEN TEXT — send later (+10m, 18:30, tomorrow 09:00, ISO time); "
    "/schedule lists, /schedule cancel ID",
}


@dataclass(frozen=True)
class SlashCommand:
    name: str
    args: str


def parse(text: str) -> SlashCommand | None:
    """The command in ``text``, or None for a plain message ("//x" sends "/x")."""
    if not text.startswith("/") or text.startswith("//"):
        return None
    head, _, rest = text[1:].partition(" ")
    return SlashCommand(head.lower(), rest.strip())


def unescape(text: str) -> str:
    return text[1:] if text.startswith("//") else text


def timer_seconds(text: str) -> int | None:
    """A disappearing-messages timer as typed (/timer, chat info): seconds, or None for off (also 0, none).

    Raises ValueError, with a message fit to show, for anything else that is not a duration."""
    text = text.strip()
    return None if text.lower() in ("off", "0", "none") else parse_duration(text)
