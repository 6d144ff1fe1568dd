"""Typed events for user interfaces: what the Messenger yields after decrypting the live stream.

UIs match on these classes; none of them holds ciphertext or keys.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

MessageStatus = Literal["ok", "waiting_for_key", "undecryptable", "deleted"]


@dataclass
class Message:
    """A message as a person sees it: decrypted text, or why there is none."""

    id: int
    chat_id: int
    seq: int
    sender: str
    sender_device: str | None
    text: str | None
    status: MessageStatus
    created_at: datetime
    reply_to: int | None = None
    edited_at: datetime | None = None
    reactions: dict[str, list[str]] = field(default_factory=dict)
    pinned: bool = False
    # the sending device is verified by us (SAS or safety number)
    verified: bool = False
    kind: str = "text"  # "text", or "emote" for /me


@dataclass
class Event:
    chat_id: int | None = None
    seq: int | None = None


@dataclass
class MessageReceived(Event):
    message: Message | None = None


@dataclass
class MessageEdited(Event):
    message: Message | None = None


@dataclass
class MessageDeleted(Event):
    message_id: int = 0
    by: str = ""


@dataclass
class ReactionChanged(Event):
    message_id: int = 0
    user: str = ""
    emoji: str = ""
    added: bool = True


@dataclass
class PinChanged(Event):
    message_id: int = 0
    by: str = ""
    pinned: bool = True


@dataclass
class ReceiptUpdated(Event):
    user: str = ""
    read_seq: int = 0
    delivered_seq: int = 0


@dataclass
class Typing(Event):
    user: str = ""
    typing: bool = True
    expires_in: int = 6


@dataclass
class Presence(Event):
    user: str = ""
    online: bool = False
    last_seen: datetime | None = None


@dataclass
class MemberChanged(Event):
    change: Literal["joined", "left", "removed", "role_changed"] = "joined"
    user: str = ""
    role: str | None = None
    by: str | None = None


@dataclass
class ChatChanged(Event):
    change: Literal["created", "updated"] = "created"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class KeyWarning(Event):
    """A contact's identity key changed, or an unverified device appeared: show it loudly."""

    user: str = ""
    device_id: str = ""
    reason: Literal["identity_changed", "new_unverified_device"] = "identity_changed"


@dataclass
class VerificationUpdate(Event):
    user: str = ""
    device_id: str = ""
    state: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class CallSignal(Event):
    user: str = ""
    device_id: str = ""
    call_id: str = ""
    action: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class CallMissed(Event):
    """A call in this chat went unanswered (the record holds no content, only who and when)."""

    call_id: str = ""
    caller: str = ""
    at: str = ""


@dataclass
class ConnectionState(Event):
    state: str = ""


@dataclass
class ResyncRequired(Event):
    chat_ids: list[int] = field(default_factory=list)


@dataclass
class SessionEnded(Event):
    reason: str = ""
