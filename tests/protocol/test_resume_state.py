"""The SDK's resume state machine without sockets: cursor, duplicates, gaps, out-of-order, reconnects."""

from collections import deque
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from melo_protocol.client.resume import ResumeState, position
from melo_protocol.wire.chats import MessageOut
from melo_protocol.wire.realtime import (
    AckFrame,
    CaughtUpFrame,
    ChatEventFrame,
    ErrorFrame,
    EventType,
    MemberFrame,
    MessageEventFrame,
    PresenceFrame,
    ReadyFrame,
    TypingFrame,
    UnknownFrame,
    parse_server_frame,
)

TS = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def message_data(chat_id: int, seq: int) -> dict[str, Any]:
    return MessageOut(
        id=seq, chat_id=chat_id, seq=seq, sender="alice", sender_id=1, sender_device="D1", text=f"m{seq}", created_at=TS
    ).model_dump(mode="json")


def event(chat_id: int, seq: int) -> ChatEventFrame:
    raw = ChatEventFrame(
        type=EventType.MESSAGE_CREATED, chat_id=chat_id, seq=seq, ts=TS, data=message_data(chat_id, seq)
    ).model_dump_json()
    frame = parse_server_frame(raw)
    assert isinstance(frame, MessageEventFrame)
    return frame


# ---- parsing ------------------------------------------------------------------------------------------------
def test_frames_parse_into_their_models() -> None:
    assert isinstance(
        parse_server_frame(
            '{"type":"ready","protocol":1,"user_id":1,"username":"a","session_id":"s",'
            '"device_id":"D","heartbeat_s":25,"idle_timeout_s":75.0}'
        ),
        ReadyFrame,
    )
    assert isinstance(parse_server_frame({"type": "caught_up", "cursor": {"4": 7}}), CaughtUpFrame)
    assert isinstance(parse_server_frame({"type": "ack", "id": "x", "result": None}), AckFrame)
    err = parse_server_frame(
        {"type": "error", "id": None, "error": {"code": "rate_limited", "message": "m", "details": {}}}
    )
    assert isinstance(err, ErrorFrame) and err.error.code == "rate_limited"
    typing = parse_server_frame(b'{"type":"typing","chat_id":4,"user":"bob","typing":true,"expires_in":6}')
    assert isinstance(typing, TypingFrame) and typing.chat_id == 4
    presence = parse_server_frame(
        {"type": "presence", "user": "bob", "online": False, "last_seen": "2026-12-02T09:30:00+00:00"}
    )
    assert isinstance(presence, PresenceFrame) and presence.last_seen == TS
    msg = event(4, 9)
    assert msg.type is EventType.MESSAGE_CREATED and msg.data.text == "m9" and msg.ts == TS
    notice = parse_server_frame(
        {
            "type": "member.left",
            "chat_id": 4,
            "seq": 10,
            "ts": TS.isoformat(),
            "data": {"user": {"id": 2, "username": "bob"}, "by": "bob"},
        }
    )
    assert isinstance(notice, MemberFrame) and notice.type is EventType.MEMBER_LEFT
    assert notice.data.user.id == 2 and notice.data.by == "bob"


def test_a_newer_servers_frame_is_kept_as_unknown() -> None:
    frame = parse_server_frame({"type": "poll.created", "chat_id": 4, "seq": 11, "question": "?"})
    assert isinstance(frame, UnknownFrame) and frame.type == "poll.created"
    assert position(frame) == (4, 11) and frame.model_extra == {"question": "?"}
    assert position(parse_server_frame({"type": "hello"})) is None


@pytest.mark.parametrize("bad", ["[1, 2]", '{"no_type": 1}', '{"type": "typing", "chat_id": "x"}', "not json"])
def test_what_is_not_a_frame_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        parse_server_frame(bad)


# ---- the state machine --------------------------------------------------------------------------------------
def test_from_now_adopts_the_servers_cursor_once() -> None:
    s = ResumeState()
    assert s.connecting() is None
    assert s.caught_up({"4": 7}) is True and s.cursor == {"4": 7} and s.live
    s.disconnected()
    assert not s.live
    assert s.connecting() == {"4": 7}
    assert s.caught_up({"4": 9, "5": 1}) is False and s.cursor == {"4": 7}


def test_resume_hands_out_each_event_once() -> None:
    s = ResumeState(cursor={"4": 3})
    assert s.connecting() == {"4": 3}
    assert s.received(event(4, 4)) is True
    assert s.received(event(4, 4)) is False  # a duplicate
    assert s.received(event(4, 2)) is False  # older than the cursor
    assert s.handed_out(event(4, 4)) is True and s.cursor == {"4": 4}
    assert s.handed_out(event(4, 4)) is False


def test_frames_still_queued_at_a_reconnect_are_not_handed_out_twice() -> None:
    s = ResumeState(cursor={"4": 3})
    for seq in (4, 5, 6):
        assert s.received(event(4, seq))
    s.handed_out(event(4, 4))
    s.disconnected()
    assert s.connecting() == {"4": 4}  # the consumer has 4: the server resends 5 and 6, still queued
    assert [s.received(event(4, seq)) for seq in (5, 6, 7)] == [False, False, True]


def test_a_gap_is_the_servers_to_fill_the_client_hands_out_what_comes() -> None:
    s = ResumeState(cursor={"4": 3})
    assert s.received(event(4, 6)) and s.handed_out(event(4, 6))
    assert s.received(event(4, 5)) is False  # late: behind what was handed out
    assert s.cursor == {"4": 6}


def test_frames_without_a_chat_position_pass_and_do_not_move_the_cursor() -> None:
    s = ResumeState()
    typing = parse_server_frame({"type": "typing", "chat_id": 4, "user": "b", "typing": True, "expires_in": 6})
    assert s.received(typing) and s.received(typing)
    assert s.handed_out(typing) is False and s.cursor is None
    assert s.handed_out(event(4, 2)) is True and s.cursor == {"4": 2}  # a first event starts a cursor


# ---- properties ---------------------------------------------------------------------------------------------
@st.composite
def sessions(draw: Any) -> tuple[dict[str, int], list[tuple[int, int]], list[tuple[str, int]]]:
    """Two chats' events in some global order, a starting cursor, and what happens: the server sends its next
    frame, re-sends an old one (a duplicate or late copy), the consumer takes one, or the connection drops."""
    counts = {4: draw(st.integers(0, 12)), 5: draw(st.integers(0, 12))}
    order = draw(st.permutations([c for c, n in counts.items() for _ in range(n)]))
    log, seen = [], dict.fromkeys(counts, 0)
    for chat in order:
        seen[chat] += 1
        log.append((chat, seen[chat]))
    cursor = {str(c): draw(st.integers(0, n)) for c, n in counts.items()}
    steps = draw(
        st.lists(
            st.tuples(st.sampled_from(["send", "send", "again", "take", "drop"]), st.integers(0, 30)), max_size=120
        )
    )
    return cursor, log, steps


@settings(max_examples=300, deadline=None)
@given(sessions())
def test_each_event_is_handed_out_once_in_order_across_reconnects(
    case: tuple[dict[str, int], list[tuple[int, int]], list[tuple[str, int]]],
) -> None:
    start, log, steps = case
    s = ResumeState(cursor=dict(start))
    queue: deque[ChatEventFrame] = deque()
    handed: list[tuple[int, int]] = []
    sent: list[tuple[int, int]] = []

    def connect() -> list[tuple[int, int]]:
        cursor = s.connecting() or {}
        return [(c, q) for c, q in log if q > cursor.get(str(c), 0)]  # the server's backlog from the cursor

    pending = connect()
    for what, k in [*steps, *[("take", 0)] * (len(log) * 2 + 200)]:
        if what == "send" and pending:
            chat, seq = pending.pop(0)
            sent.append((chat, seq))
            if s.received(event(chat, seq)):
                queue.append(event(chat, seq))
        elif what == "again" and sent:
            chat, seq = sent[k % len(sent)]
            if s.received(event(chat, seq)):
                queue.append(event(chat, seq))
        elif what == "take" and queue:
            frame = queue.popleft()
            s.handed_out(frame)
            handed.append((frame.chat_id, frame.seq))
        elif what == "drop":
            s.disconnected()
            pending = connect()
        if what == "take" and not queue and pending:  # draining: let the server finish its backlog
            chat, seq = pending.pop(0)
            sent.append((chat, seq))
            if s.received(event(chat, seq)):
                queue.append(event(chat, seq))
    for chat in (4, 5):
        got = [q for c, q in handed if c == chat]
        first = start[str(chat)] + 1
        assert got == list(range(first, first + len(got)))  # once each, in order, no gap
        last = max([q for c, q in log if c == chat], default=0)
        assert got == list(range(first, last + 1))  # and, once drained, all of it
        assert s.cursor is not None and s.cursor[str(chat)] == max(got, default=start[str(chat)])
