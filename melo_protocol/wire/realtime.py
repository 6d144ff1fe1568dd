"""WebSocket frames on ``/v1/ws``: client commands (``op``) and server frames (``type``).

The first client frame must be ``auth``. Chat events carry ``chat_id`` and a per-chat ``seq``; the
client's resume cursor maps chat ids to the last seq it has seen.
"""

from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, PlainSerializer, TypeAdapter

from melo_protocol.wire.base import Request, Response
from melo_protocol.wire.bounds import Id, Seq
from melo_protocol.wire.chats import E2EEnvelope, MessageSend, ReactionKey, _Content
from melo_protocol.wire.errors import ErrorBody

MAX_FRAME_BYTES = 256 * 1024
TYPING_EXPIRES_S = 6

# A time the server writes with ``datetime.isoformat()`` ("…+00:00"), as it always has; read as any ISO 8601.
IsoTime = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str, when_used="json")]


class CloseCode(IntEnum):
    """Application close codes (RFC 6455 reserves 4000-4999 for applications)."""

    AUTH_FAILED = 4001  # first frame was not a valid auth, or it came too late
    IDLE_TIMEOUT = 4002  # nothing heard from the client for too long
    SESSION_REVOKED = 4003  # the session was revoked (logout, admin, ban, password change)
    RESYNC = 4008  # the client fell behind (send queue full): reconnect and resume from the cursor
    BAD_FRAMES = 4009  # too many invalid frames within a window (rate-limited commands do not count)
    MESSAGE_TOO_BIG = 1009  # a frame over MAX_FRAME_BYTES (RFC 6455's code; refused by the transport)
    SERVER_SHUTDOWN = 1012  # the server restarts: reconnect and resume


class EventType(StrEnum):
    MESSAGE_CREATED = "message.created"
    MESSAGE_EDITED = "message.edited"
    MESSAGE_DELETED = "message.deleted"
    REACTION_ADDED = "reaction.added"
    REACTION_REMOVED = "reaction.removed"
    MESSAGE_PINNED = "message.pinned"
    MESSAGE_UNPINNED = "message.unpinned"
    RECEIPT = "receipt"
    MEMBER_JOINED = "member.joined"
    MEMBER_LEFT = "member.left"
    MEMBER_REMOVED = "member.removed"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    CHAT_CREATED = "chat.created"
    CHAT_UPDATED = "chat.updated"
    CALL_MISSED = "call.missed"


# ---- client → server -------------------------------------------------------------------------------
class _Cmd(Request):
    id: str | None = Field(default=None, max_length=64)


class AuthCmd(_Cmd):
    op: Literal["auth"]
    token: str = Field(max_length=4096)
    # chat id (as a string, JSON keys are strings) → last seq seen; None: start from now, no backlog
    cursor: dict[Id, Seq] | None = Field(default=None, max_length=10_000)


class SendCmd(_Cmd, MessageSend):
    op: Literal["send"]
    chat_id: Id


class EditCmd(_Cmd, _Content):
    op: Literal["edit"]
    chat_id: Id
    message_id: Id


class DeleteCmd(_Cmd):
    op: Literal["delete"]
    chat_id: Id
    message_id: Id


class ReactCmd(_Cmd):
    op: Literal["react"]
    chat_id: Id
    message_id: Id
    emoji: ReactionKey
    remove: bool = False


class TypingCmd(_Cmd):
    op: Literal["typing"]
    chat_id: Id
    typing: bool = True


class ReadCmd(_Cmd):
    op: Literal["read"]
    chat_id: Id
    seq: Seq


class ReceivedCmd(_Cmd):
    op: Literal["received"]
    chat_id: Id
    seq: Seq


class PingCmd(_Cmd):
    op: Literal["ping"]


class ToDeviceAckCmd(_Cmd):
    """Everything up to this to-device id was processed: the server forgets it."""

    op: Literal["to_device_ack"]
    up_to: Seq


ClientCommand = Annotated[
    AuthCmd | SendCmd | EditCmd | DeleteCmd | ReactCmd | TypingCmd | ReadCmd | ReceivedCmd | PingCmd
    | ToDeviceAckCmd,
    Field(discriminator="op"),
]
client_command_adapter: TypeAdapter[Any] = TypeAdapter(ClientCommand)


# ---- server → client -------------------------------------------------------------------------------
class ReadyFrame(Response):
    type: Literal["ready"] = "ready"
    protocol: int
    user_id: int
    username: str
    session_id: str
    device_id: str
    heartbeat_s: int
    idle_timeout_s: float  # a float setting (MELO_WS_IDLE_TIMEOUT_S), sent as it is


class CaughtUpFrame(Response):
    """Sent once after the backlog named by the cursor: from here on, events are live."""

    type: Literal["caught_up"] = "caught_up"
    cursor: dict[str, int]


class AckFrame(Response):
    type: Literal["ack"] = "ack"
    id: str | None = None
    result: dict[str, Any] | None = None


class ErrorFrame(Response):
    type: Literal["error"] = "error"
    id: str | None = None
    error: ErrorBody


class PongFrame(Response):
    type: Literal["pong"] = "pong"
    id: str | None = None


class ChatEventFrame(Response):
    """A stored chat event: resumable, ordered by ``seq`` within ``chat_id``."""

    type: EventType
    chat_id: int
    seq: int
    ts: IsoTime
    data: dict[str, Any]


class TypingFrame(Response):
    type: Literal["typing"] = "typing"
    chat_id: int
    user: str
    typing: bool
    expires_in: int = TYPING_EXPIRES_S


class PresenceFrame(Response):
    type: Literal["presence"] = "presence"
    user: str
    online: bool
    last_seen: IsoTime | None = None


class ResyncRequiredFrame(Response):
    """The cursor for these chats is older than what the server keeps: reload them over REST."""

    type: Literal["resync_required"] = "resync_required"
    chat_ids: list[int]


class ToDeviceFrame(Response):
    """An end-to-end encrypted message for this device (room keys, verification, call signalling)."""

    type: Literal["to_device"] = "to_device"
    id: int
    message_type: str
    sender: str
    sender_id: int
    sender_device: str
    content: dict[str, Any]
    created_at: datetime


class DevicesChangedFrame(Response):
    """A user you share a chat with (or you) gained or lost a device: fetch their keys again."""

    type: Literal["devices.changed"] = "devices.changed"
    user: str
    user_id: int


class KeysLowFrame(Response):
    """This device's one-time keys run low: upload more."""

    type: Literal["keys.low"] = "keys.low"
    device_id: str


class SessionRevokedFrame(Response):
    type: Literal["session.revoked"] = "session.revoked"
    reason: str | None = None


ServerFrame = Annotated[
    ReadyFrame | CaughtUpFrame | AckFrame | ErrorFrame | PongFrame | TypingFrame | PresenceFrame
    | ResyncRequiredFrame | SessionRevokedFrame | ToDeviceFrame | DevicesChangedFrame | KeysLowFrame,
    Field(discriminator="type"),
]

__all__ = [
    "MAX_FRAME_BYTES",
    "TYPING_EXPIRES_S",
    "AckFrame",
    "AuthCmd",
    "CaughtUpFrame",
    "ChatEventFrame",
    "ClientCommand",
    "CloseCode",
    "DeleteCmd",
    "E2EEnvelope",
    "EditCmd",
    "ErrorFrame",
    "EventType",
    "IsoTime",
    "PingCmd",
    "PongFrame",
    "PresenceFrame",
    "ReactCmd",
    "ReadCmd",
    "ReadyFrame",
    "ReceivedCmd",
    "ResyncRequiredFrame",
    "SendCmd",
    "ServerFrame",
    "SessionRevokedFrame",
    "ToDeviceAckCmd",
    "ToDeviceFrame",
    "TypingCmd",
    "TypingFrame",
    "client_command_adapter",
]
