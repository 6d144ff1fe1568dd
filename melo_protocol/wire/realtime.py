"""WebSocket frames on ``/v1/ws``: client commands (``op``) and server frames (``type``).

The first client frame must be ``auth``. Chat events carry ``chat_id`` and a per-chat ``seq``; the
client's resume cursor maps chat ids to the last seq it has seen.
"""

from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, PlainSerializer, TypeAdapter, ValidationError

from melo_protocol.wire.base import Request, Response
from melo_protocol.wire.bounds import Id, Seq
from melo_protocol.wire.chats import E2EEnvelope, MessageOut, MessageSend, ReactionKey, UserRef, _Content
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
    """A stored chat event: resumable, ordered by ``seq`` within ``chat_id``.

    The server builds every chat event with this model; a client reads one as the subclass for its type.
    """

    type: EventType
    chat_id: int
    seq: int
    ts: IsoTime
    data: dict[str, Any]


class MessageEventFrame(ChatEventFrame):
    """``message.created`` and ``message.edited``: the message itself."""

    type: Literal[EventType.MESSAGE_CREATED, EventType.MESSAGE_EDITED]  # type: ignore[assignment]
    data: MessageOut  # type: ignore[assignment]


# The client's view of the other chat events: ``data`` typed per event (docs/protocol.md, "Server frames").
class MessageDeletedData(Response):
    message_id: int
    by: str | None = None  # None: deleted by the chat's message timer
    reason: str | None = None  # "expired" for the timer's deletions


class ReactionData(Response):
    message_id: int
    user: str
    emoji: str


class PinData(Response):
    message_id: int
    by: str | None = None


class ReceiptData(Response):
    user: str
    read_seq: int
    delivered_seq: int


class MemberData(Response):
    user: UserRef
    role: str | None = None  # member.joined, member.role_changed
    by: str | None = None
    chat: dict[str, Any] | None = None  # member.joined: the chat's summary


class CallMissedData(Response):
    call_id: str
    caller: str
    at: str  # ISO 8601, as the caller's client gave it


class MessageDeletedFrame(ChatEventFrame):
    type: Literal[EventType.MESSAGE_DELETED]  # type: ignore[assignment]
    data: MessageDeletedData  # type: ignore[assignment]


class ReactionFrame(ChatEventFrame):
    type: Literal[EventType.REACTION_ADDED, EventType.REACTION_REMOVED]  # type: ignore[assignment]
    data: ReactionData  # type: ignore[assignment]


class PinFrame(ChatEventFrame):
    type: Literal[EventType.MESSAGE_PINNED, EventType.MESSAGE_UNPINNED]  # type: ignore[assignment]
    data: PinData  # type: ignore[assignment]


class ReceiptFrame(ChatEventFrame):
    type: Literal[EventType.RECEIPT]  # type: ignore[assignment]
    data: ReceiptData  # type: ignore[assignment]


class MemberFrame(ChatEventFrame):
    type: Literal[  # type: ignore[assignment]
        EventType.MEMBER_JOINED, EventType.MEMBER_LEFT, EventType.MEMBER_REMOVED, EventType.MEMBER_ROLE_CHANGED
    ]
    data: MemberData  # type: ignore[assignment]


class ChatChangeFrame(ChatEventFrame):
    """``chat.created`` (the chat's summary and members) and ``chat.updated`` (the changed fields, by)."""

    type: Literal[EventType.CHAT_CREATED, EventType.CHAT_UPDATED]  # type: ignore[assignment]


class CallMissedFrame(ChatEventFrame):
    type: Literal[EventType.CALL_MISSED]  # type: ignore[assignment]
    data: CallMissedData  # type: ignore[assignment]


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


class UnknownFrame(Response):
    """A frame of a type this version does not know (a newer server's): kept as it came (``model_extra``);
    resumable like a chat event when it names a chat and a seq."""

    model_config = ConfigDict(extra="allow")

    type: str
    chat_id: int | None = None
    seq: int | None = None


ServerFrame = Annotated[
    ReadyFrame | CaughtUpFrame | AckFrame | ErrorFrame | PongFrame | TypingFrame | PresenceFrame
    | ResyncRequiredFrame | SessionRevokedFrame | ToDeviceFrame | DevicesChangedFrame | KeysLowFrame
    | MessageEventFrame | MessageDeletedFrame | ReactionFrame | PinFrame | ReceiptFrame | MemberFrame
    | ChatChangeFrame | CallMissedFrame,
    Field(discriminator="type"),
]
server_frame_adapter: TypeAdapter[Any] = TypeAdapter(ServerFrame)


def parse_server_frame(data: str | bytes | dict[str, Any]) -> Any:
    """One server frame (JSON text, or the object decoded from it) as its model, by ``type``.

    A frame of a type this version does not know is an ``UnknownFrame``. Raises ``ValidationError`` for
    anything else that breaks a model: not JSON, not an object, no ``type``, or a known frame's bad field.
    """
    try:
        if isinstance(data, dict):
            return server_frame_adapter.validate_python(data)
        return server_frame_adapter.validate_json(data)
    except ValidationError as exc:
        if not any(e["type"] == "union_tag_invalid" and not e["loc"] for e in exc.errors()):
            raise
    return UnknownFrame.model_validate(data) if isinstance(data, dict) else UnknownFrame.model_validate_json(data)

__all__ = [
    "MAX_FRAME_BYTES",
    "TYPING_EXPIRES_S",
    "AckFrame",
    "AuthCmd",
    "CallMissedData",
    "CallMissedFrame",
    "CaughtUpFrame",
    "ChatChangeFrame",
    "ChatEventFrame",
    "ClientCommand",
    "CloseCode",
    "DeleteCmd",
    "DevicesChangedFrame",
    "E2EEnvelope",
    "EditCmd",
    "ErrorFrame",
    "EventType",
    "IsoTime",
    "KeysLowFrame",
    "MemberData",
    "MemberFrame",
    "MessageDeletedData",
    "MessageDeletedFrame",
    "MessageEventFrame",
    "PinData",
    "PinFrame",
    "PingCmd",
    "PongFrame",
    "PresenceFrame",
    "ReactCmd",
    "ReactionData",
    "ReactionFrame",
    "ReadCmd",
    "ReadyFrame",
    "ReceiptData",
    "ReceiptFrame",
    "ReceivedCmd",
    "ResyncRequiredFrame",
    "SendCmd",
    "ServerFrame",
    "SessionRevokedFrame",
    "ToDeviceAckCmd",
    "ToDeviceFrame",
    "TypingCmd",
    "TypingFrame",
    "UnknownFrame",
    "client_command_adapter",
    "parse_server_frame",
    "server_frame_adapter",
]
