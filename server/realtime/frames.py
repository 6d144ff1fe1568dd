"""Server frames as text: each one built from its ``melo_protocol.wire.realtime`` model.

Serialised with pydantic v2 (``model_dump_json``, the model's cached serialiser): typed, and faster than
the hand-built dicts through stdlib json it replaced (docs/architecture.md, "Frames"). A frame fanned out
to many sockets is serialised once, by its publisher, and the same text goes to every socket.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from melo_protocol.wire import PROTOCOL_VERSION
from melo_protocol.wire.errors import ErrorBody
from melo_protocol.wire.keys import ToDeviceOut
from melo_protocol.wire.realtime import (
    AckFrame,
    CaughtUpFrame,
    ChatEventFrame,
    DevicesChangedFrame,
    ErrorFrame,
    EventType,
    KeysLowFrame,
    PongFrame,
    PresenceFrame,
    ReadyFrame,
    ResyncRequiredFrame,
    SessionRevokedFrame,
    ToDeviceFrame,
    TypingFrame,
)


def error_frame(code: str, message: str, req_id: str | None = None, details: dict[str, Any] | None = None) -> str:
    body = ErrorBody(code=code, message=message, details=details or {})
    return ErrorFrame(id=req_id, error=body).model_dump_json()


def validation_details(exc: ValidationError) -> dict[str, Any]:
    """Where a frame is invalid and why, never the values (the first ten errors: a frame may hold thousands)."""
    return {
        "errors": [
            {"loc": [str(p) for p in e.get("loc", ())], "type": e.get("type"), "msg": e.get("msg")}
            for e in exc.errors()[:10]
        ]
    }


def ack_frame(req_id: str | None, result: dict[str, Any] | None = None) -> str:
    return AckFrame(id=req_id, result=result).model_dump_json()


def pong_frame(req_id: str | None) -> str:
    return PongFrame(id=req_id).model_dump_json()


def ready_frame(
    *, user_id: int, username: str, session_id: str, device_id: str, heartbeat_s: int, idle_timeout_s: float
) -> str:
    return ReadyFrame(
        protocol=PROTOCOL_VERSION,
        user_id=user_id,
        username=username,
        session_id=session_id,
        device_id=device_id,
        heartbeat_s=heartbeat_s,
        idle_timeout_s=idle_timeout_s,
    ).model_dump_json()


def caught_up_frame(cursor: Mapping[int, int]) -> str:
    return CaughtUpFrame(cursor={str(k): v for k, v in cursor.items()}).model_dump_json()


def resync_required_frame(chat_ids: list[int]) -> str:
    return ResyncRequiredFrame(chat_ids=chat_ids).model_dump_json()


def typing_frame(chat_id: int, user: str, typing: bool) -> str:
    return TypingFrame(chat_id=chat_id, user=user, typing=typing).model_dump_json()


def presence_frame(user: str, online: bool, last_seen: datetime | None) -> str:
    return PresenceFrame(user=user, online=online, last_seen=last_seen).model_dump_json()


def session_revoked_frame(reason: str) -> str:
    return SessionRevokedFrame(reason=reason).model_dump_json()


def chat_event_frame(chat_id: int, seq: int, type_: str, ts: datetime, data: dict[str, Any]) -> str:
    return ChatEventFrame(type=EventType(type_), chat_id=chat_id, seq=seq, ts=ts, data=data).model_dump_json()


def to_device_frame(item: ToDeviceOut) -> str:
    return ToDeviceFrame(
        id=item.id,
        message_type=item.type,
        sender=item.sender,
        sender_id=item.sender_id,
        sender_device=item.sender_device,
        content=item.content,
        created_at=item.created_at,
    ).model_dump_json()


def devices_changed_frame(user: str, user_id: int) -> str:
    return DevicesChangedFrame(user=user, user_id=user_id).model_dump_json()


def keys_low_frame(device_id: str) -> str:
    return KeysLowFrame(device_id=device_id).model_dump_json()
