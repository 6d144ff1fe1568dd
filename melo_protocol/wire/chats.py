"""Chats, members, invites, messages, receipts: REST bodies and the objects inside events."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from melo_protocol.wire.base import Request, Response
from melo_protocol.wire.bounds import Id, Seq

MAX_TEXT_BYTES = 64 * 1024  # a message's text, in UTF-8: channels check it here, E2E clients before encrypting
MAX_GROUP_MEMBERS = 1000
# base64 of the Megolm message of a text at MAX_TEXT_BYTES: inside the encrypted JSON event its string can
# double (quotes, backslashes and newlines are escaped), plus the event's other keys, AES padding, MAC
# and signature (well under 1 KiB); so any text a channel takes fits encrypted too
MAX_CIPHERTEXT_CHARS = 4 * ((2 * MAX_TEXT_BYTES + 1024 + 2) // 3)
HISTORY_MAX_LIMIT = 200


class ChatKind(StrEnum):
    DIRECT = "direct"
    GROUP = "group"
    CHANNEL = "channel"


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class UserRef(Response):
    id: int
    username: str
    display_name: str | None = None
    # presence where a client shows it (member lists, the peer of a DM in chat lists); None elsewhere
    online: bool | None = None


class DirectChatCreate(Request):
    username: str = Field(max_length=64)


class ChatCreate(Request):
    kind: Literal["group", "channel"]
    title: str = Field(min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=1000)
    members: list[str] = Field(default_factory=list, max_length=MAX_GROUP_MEMBERS - 1)


class ChatUpdate(Request):
    title: str | None = Field(default=None, min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=1000)
    slow_mode_seconds: int | None = Field(default=None, ge=0, le=86400)


class E2EEnvelope(Request):
    """What an E2E client sends instead of text; the server stores and relays it, never reads it."""

    algorithm: str = Field(max_length=64)
    sender_key: str = Field(max_length=128)
    session_id: str = Field(max_length=128)
    ciphertext: str = Field(max_length=MAX_CIPHERTEXT_CHARS)
    device_id: str | None = Field(default=None, max_length=64)


def check_text_size(text: str) -> str:
    """At most MAX_TEXT_BYTES of UTF-8, the limit of every chat (ValueError in the user's words otherwise).
    Channels check it in the wire model; E2E clients before encrypting (the server sees ciphertext only)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        if size == len(text):
            raise ValueError(f"message too long: {size:,} characters, at most {MAX_TEXT_BYTES:,}")
        raise ValueError(f"message too long: {len(text):,} characters ({size:,} bytes in UTF-8), "
                         f"at most {MAX_TEXT_BYTES:,} bytes")
    return text


def check_text(text: str) -> str:
    """A plain-text message as the server takes it: within the size limit and not blank."""
    if not check_text_size(text).strip():
        raise ValueError("message is empty")
    return text


class _Content(Request):
    text: str | None = None
    e2e: E2EEnvelope | None = None
    # with e2e: the digest of the member devices it was encrypted for (wire.keys.recipient_devices_digest);
    # the server refuses the message with recipients_changed (409) when the chat's differ
    recipient_devices: str | None = Field(default=None, min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")

    @field_validator("text")
    @classmethod
    def _text_size(cls, value: str | None) -> str | None:
        return check_text(value) if value is not None else None

    @model_validator(mode="after")
    def _exactly_one(self) -> "_Content":
        if (self.text is None) == (self.e2e is None):
            raise ValueError("give exactly one of text or e2e")
        return self


class MessageSend(_Content):
    txn_id: str = Field(min_length=1, max_length=64)
    reply_to: Id | None = None


class MessageEdit(_Content):
    pass


def reaction_key(value: str) -> str:
    """A reaction is one emoji as people see it: a ZWJ sequence (👩🏽‍💻), a skin tone, a flag or a keycap counts
    as one. It is kept in its fully qualified form, so ❤ and ❤️ are the same reaction. Words, letters and lone
    modifiers are refused."""
    import emoji  # 25 ms to import: paid when a reaction is checked, never at CLI start-up

    data = emoji.EMOJI_DATA.get(value) if len(value) <= 32 else None
    if data is None or data["status"] == emoji.STATUS["component"]:
        raise ValueError("a reaction is one emoji, e.g. 👍")
    if data["status"] != emoji.STATUS["fully_qualified"]:
        qualified = emoji.emojize(data["en"])
        if emoji.EMOJI_DATA.get(qualified, {}).get("status") == emoji.STATUS["fully_qualified"]:
            return qualified
    return value


# The emoji known to the `emoji` package the server runs (its Unicode version); see docs/protocol.md.
ReactionKey = Annotated[str, AfterValidator(reaction_key)]


class MessageOut(Response):
    id: int
    chat_id: int
    seq: int
    sender: str
    sender_id: int
    sender_device: str | None = None
    text: str | None = None
    e2e: dict[str, Any] | None = None
    reply_to: int | None = None
    created_at: datetime
    edited_at: datetime | None = None
    deleted: bool = False
    reactions: dict[str, list[str]] = Field(default_factory=dict)
    pinned: bool = False


class MessagePage(Response):
    messages: list[MessageOut]
    has_more: bool
    # messages at or below this seq were removed by retention: a client forgets its copies of them too
    purged_seq: int = 0


class ChatOut(Response):
    id: int
    kind: ChatKind
    title: str | None = None
    description: str | None = None
    e2e: bool
    slow_mode_seconds: int = 0
    message_ttl_seconds: int | None = None  # disappearing-messages timer (PUT /v1/chats/{id}/timer); None: off
    created_at: datetime
    role: Role | None = None
    member_count: int
    last_seq: int
    purged_seq: int = 0  # retention removed every message at or below this seq (clients drop their copies)
    unread_count: int = 0
    peer: UserRef | None = None  # the other user of a DM
    last_message: MessageOut | None = None


class ChatList(Response):
    chats: list[ChatOut]


class MemberOut(Response):
    user: UserRef
    role: Role
    joined_at: datetime
    read_seq: int = 0
    delivered_seq: int = 0


class MemberList(Response):
    members: list[MemberOut]


class MemberAdd(Request):
    username: str = Field(max_length=64)


class RoleChange(Request):
    role: Role


class OwnershipTransfer(Request):
    username: str = Field(max_length=64)


class InviteCreate(Request):
    expires_in_seconds: int | None = Field(default=None, ge=60, le=366 * 86400)
    max_uses: int | None = Field(default=None, ge=1, le=100_000)


class InviteOut(Response):
    code: str
    chat_id: int
    created_at: datetime
    expires_at: datetime | None = None
    max_uses: int | None = None
    uses: int
    revoked: bool


class InviteList(Response):
    invites: list[InviteOut]


class ReadMark(Request):
    seq: Seq


class PinRequest(Request):
    message_id: Id
