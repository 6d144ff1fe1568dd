"""Messages the app sends down to its screens. They do not bubble: a screen handles them, or nobody.

What a screen asks of the app (join, invite, call…) is nested in the screen that posts it
(``ChatScreen.InviteWanted``) and bubbles up to the app.
"""

from dataclasses import dataclass

from textual.message import Message

from melo_protocol.client import events as ev


@dataclass
class LiveEvent(Message, bubble=False):
    """An event of the live stream, for the screen that shows it."""

    event: ev.Event


@dataclass
class ConnectionChanged(Message, bubble=False):
    """Who is logged in and the live connection's state ("connected", "reconnecting"…), for the header."""

    username: str
    state: str


@dataclass
class ChatJoined(Message, bubble=False):
    """A chat the user just created or joined: list it and open it."""

    chat_id: int


@dataclass
class ChatLeft(Message, bubble=False):
    """The user left this chat (``/leave``)."""

    chat_id: int
