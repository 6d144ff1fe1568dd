"""Each server frame, built from its wire model, is the JSON the server sent before the models were used.

The expected side of each test is the hand-built ``json.dumps`` the server used to send (kept here as the
golden reference), so keys, values and the presence of optional keys cannot drift.
"""

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from melo_protocol.wire import PROTOCOL_VERSION, ErrorCode
from melo_protocol.wire.chats import MessageOut
from melo_protocol.wire.keys import ToDeviceOut
from melo_protocol.wire.realtime import TYPING_EXPIRES_S, AuthCmd, EventType
from server.realtime import frames
from server.realtime.bus import BusEvent

TS = datetime(2026, 12, 2, 9, 30, 5, 123456, tzinfo=UTC)
TS_WHOLE = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def same(new: str, old: str) -> None:
    assert json.loads(new) == json.loads(old)
    assert list(json.loads(new)) == list(json.loads(old))  # same keys in the same order too


@pytest.mark.parametrize("details", [None, {"limit": 3}, {"errors": [{"loc": ["a"], "type": "t", "msg": "é"}]}])
@pytest.mark.parametrize("req_id", [None, "c1"])
def test_error(details: dict[str, Any] | None, req_id: str | None) -> None:
    old = json.dumps(
        {
            "type": "error",
            "id": req_id,
            "error": {"code": ErrorCode.VALIDATION_ERROR, "message": "invalid “command”", "details": details or {}},
        }
    )
    same(frames.error_frame(ErrorCode.VALIDATION_ERROR, "invalid “command”", req_id, details), old)


def test_validation_details_name_places_not_values() -> None:
    with pytest.raises(ValidationError) as info:
        AuthCmd.model_validate({"op": "auth", "token": "t", "cursor": {"0": 1}})
    details = frames.validation_details(info.value)
    assert details["errors"][0]["loc"][0] == "cursor" and "input" not in details["errors"][0]


def _message() -> dict[str, Any]:
    return MessageOut(
        id=7,
        chat_id=4,
        seq=9,
        sender="alice",
        sender_id=1,
        sender_device="D1",
        text="héllo 👋",
        created_at=TS,
        reactions={"👍": ["bob"]},
    ).model_dump(mode="json")


@pytest.mark.parametrize("result", [None, {"removed": 3}, _message()])
@pytest.mark.parametrize("req_id", [None, "a1"])
def test_ack(result: dict[str, Any] | None, req_id: str | None) -> None:
    old = json.dumps({"type": "ack", "id": req_id, "result": result}, default=str, ensure_ascii=False)
    same(frames.ack_frame(req_id, result), old)


@pytest.mark.parametrize("req_id", [None, "p"])
def test_pong(req_id: str | None) -> None:
    same(frames.pong_frame(req_id), json.dumps({"type": "pong", "id": req_id}))


@pytest.mark.parametrize("idle", [75.0, 0.5])
def test_ready(idle: float) -> None:
    old = json.dumps(
        {
            "type": "ready",
            "protocol": PROTOCOL_VERSION,
            "user_id": 5,
            "username": "alice",
            "session_id": "s1",
            "device_id": "D1",
            "heartbeat_s": 25,
            "idle_timeout_s": idle,
        }
    )
    new = frames.ready_frame(
        user_id=5, username="alice", session_id="s1", device_id="D1", heartbeat_s=25, idle_timeout_s=idle
    )
    same(new, old)
    assert '"idle_timeout_s":' + str(idle) in new


@pytest.mark.parametrize("cursor", [{}, {1: 0, 42: 17}])
def test_caught_up(cursor: dict[int, int]) -> None:
    old = json.dumps({"type": "caught_up", "cursor": {str(k): v for k, v in cursor.items()}})
    same(frames.caught_up_frame(cursor), old)


def test_resync_required() -> None:
    same(frames.resync_required_frame([3, 1]), json.dumps({"type": "resync_required", "chat_ids": [3, 1]}))


@pytest.mark.parametrize("typing", [True, False])
def test_typing(typing: bool) -> None:
    old = json.dumps({"type": "typing", "chat_id": 4, "user": "bob", "typing": typing, "expires_in": TYPING_EXPIRES_S})
    same(frames.typing_frame(4, "bob", typing), old)


@pytest.mark.parametrize(("online", "now"), [(True, TS), (False, TS), (False, TS_WHOLE)])
def test_presence(online: bool, now: datetime) -> None:
    old = json.dumps(
        {"type": "presence", "user": "bob", "online": online, "last_seen": None if online else now.isoformat()}
    )
    same(frames.presence_frame("bob", online, None if online else now), old)


def test_session_revoked() -> None:
    same(
        frames.session_revoked_frame("session revoked"),
        json.dumps({"type": "session.revoked", "reason": "session revoked"}),
    )


EVENTS: list[tuple[EventType, dict[str, Any]]] = [
    (EventType.MESSAGE_CREATED, _message()),
    (EventType.MESSAGE_EDITED, _message()),
    (EventType.MESSAGE_DELETED, {"message_id": 7, "by": None, "reason": "expired"}),
    (EventType.REACTION_ADDED, {"message_id": 7, "user": "bob", "emoji": "👍"}),
    (EventType.REACTION_REMOVED, {"message_id": 7, "user": "bob", "emoji": "👍"}),
    (EventType.MESSAGE_PINNED, {"message_id": 7, "by": "alice"}),
    (EventType.MESSAGE_UNPINNED, {"message_id": 7, "by": "alice"}),
    (EventType.RECEIPT, {"user": "bob", "read_seq": 3, "delivered_seq": 9}),
    (
        EventType.MEMBER_JOINED,
        {
            "user": {"id": 2, "username": "bob", "display_name": None, "online": None},
            "role": "member",
            "by": None,
            "chat": {"id": 4, "kind": "group", "title": "t"},
        },
    ),
    (EventType.MEMBER_LEFT, {"user": {"id": 2, "username": "bob", "display_name": "B", "online": None}, "by": "bob"}),
    (EventType.MEMBER_REMOVED, {"user": {"id": 2, "username": "bob"}, "by": "alice"}),
    (EventType.MEMBER_ROLE_CHANGED, {"user": {"id": 2, "username": "bob"}, "role": "admin", "by": "alice"}),
    (
        EventType.CHAT_CREATED,
        {
            "id": 4,
            "kind": "direct",
            "title": None,
            "description": None,
            "e2e": True,
            "slow_mode_seconds": 0,
            "members": ["alice", "bob"],
        },
    ),
    (EventType.CHAT_UPDATED, {"message_ttl_seconds": 60, "by": "alice"}),
    (EventType.CALL_MISSED, {"call_id": "c" * 16, "caller": "alice", "at": TS.isoformat()}),
]


@pytest.mark.parametrize(("type_", "data"), EVENTS, ids=[t.value for t, _ in EVENTS])
@pytest.mark.parametrize("ts", [TS, TS_WHOLE])
def test_chat_event(type_: EventType, data: dict[str, Any], ts: datetime) -> None:
    old = json.dumps(
        {"type": type_.value, "chat_id": 4, "seq": 9, "ts": ts.isoformat(), "data": data},
        separators=(",", ":"),
        default=str,
        ensure_ascii=False,
    )
    new = frames.chat_event_frame(4, 9, type_.value, ts, data)
    assert new == old  # byte for byte: the frame is built once and sent as-is to every member socket


def test_every_event_type_is_covered() -> None:
    assert {t for t, _ in EVENTS} == set(EventType)


def test_to_device() -> None:
    item = ToDeviceOut(
        id=11,
        type="m.room_key",
        sender="alice",
        sender_id=1,
        sender_device="D1",
        content={"algorithm": "m.olm.v1", "ciphertext": {"k": {"type": 0, "body": "é"}}},
        created_at=TS,
    )
    body = item.model_dump(mode="json")
    body["message_type"] = body.pop("type")
    old = json.dumps({"type": "to_device", **body}, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(frames.to_device_frame(item)) == json.loads(old)


def test_devices_changed_and_keys_low() -> None:
    same(frames.devices_changed_frame("bob", 2), json.dumps({"type": "devices.changed", "user": "bob", "user_id": 2}))
    same(frames.keys_low_frame("D1"), json.dumps({"type": "keys.low", "device_id": "D1"}))


@pytest.mark.parametrize(
    "ev",
    [
        BusEvent(
            kind="chat",
            frame=frames.chat_event_frame(4, 9, "message.created", TS, _message()),
            chat_id=4,
            seq=9,
            member_add=[1, 2],
            member_remove=[3],
        ),
        BusEvent(kind="typing", frame=frames.typing_frame(4, "bob", True), chat_id=4, exclude_user=2),
        BusEvent(kind="revoke", session_ids=["s1", "s2"]),
        BusEvent(kind="presence", frame=frames.presence_frame("bob", True, None), user_ids=[1, 2]),
    ],
)
def test_bus_event_round_trip_and_header(ev: BusEvent) -> None:
    raw = ev.encode()
    assert BusEvent.decode(raw) == ev
    head, _, frame = raw.partition(b"\n")
    old_head = json.dumps(
        {
            "k": ev.kind,
            "c": ev.chat_id,
            "s": ev.seq,
            "u": ev.user_ids,
            "a": ev.member_add,
            "r": ev.member_remove,
            "x": ev.session_ids,
            "e": ev.exclude_user,
        },
        separators=(",", ":"),
    ).encode()
    assert head == old_head  # workers of the old and the new version read each other during an upgrade
    assert frame.decode() == ev.frame


def test_old_bus_events_still_decode() -> None:
    head = json.dumps(
        {"k": "device", "c": None, "s": 5, "u": [], "a": [], "r": [], "x": ["D1"], "e": None}, separators=(",", ":")
    )
    ev = BusEvent.decode(head.encode() + b"\n" + frames.keys_low_frame("D1").encode())
    assert ev == BusEvent(kind="device", frame='{"type":"keys.low","device_id":"D1"}', seq=5, session_ids=["D1"])
    assert TypeAdapter(dict[str, str]).validate_json(ev.frame) == {"type": "keys.low", "device_id": "D1"}
