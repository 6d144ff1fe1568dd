"""DeliveryState without sockets: events in, actions out (duplicates, gaps, out-of-order, leave, re-join)."""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.realtime.delivery import (
    Action,
    ChatEvent,
    DeliveryState,
    Fill,
    Membership,
    Route,
    Send,
    Unroute,
    is_own_part,
)
from server.realtime.frames import chat_event_frame

ME, OTHER, CHAT = 1, 2, 10
TS = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def message(seq: int, chat_id: int = CHAT) -> str:
    return chat_event_frame(chat_id, seq, "message.created", TS, {"id": seq, "text": f"m{seq}"})


def parted(seq: int, user_id: int = ME, chat_id: int = CHAT, type_: str = "member.left") -> str:
    return chat_event_frame(chat_id, seq, type_, TS, {"user": {"id": user_id, "username": f"u{user_id}"}, "by": "x"})


def joined(seq: int, user_id: int = ME, chat_id: int = CHAT) -> str:
    data = {"user": {"id": user_id, "username": f"u{user_id}"}, "role": "member", "by": None, "chat": {}}
    return chat_event_frame(chat_id, seq, "member.joined", TS, data)


def seq_of(frame: str) -> int:
    return int(json.loads(frame)["seq"])


@dataclass
class Driver:
    """Plays the part of Connection: carries out the actions against an in-memory store of chat events."""

    state: DeliveryState
    store: dict[int, list[str]] = field(default_factory=dict)  # chat id → its frames, seq 1, 2, …
    sent: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    routed: set[int] = field(default_factory=set)
    fills: list[Fill] = field(default_factory=list)

    def apply(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Send):
                self.sent.append(a.frame)
                if a.live:
                    self.live.append(a.frame)
            elif isinstance(a, Fill):
                self.fills.append(a)
                stored = self.store.get(a.chat_id, [])
                for seq in range(a.after + 1, len(stored) + 1 if a.up_to is None else min(a.up_to, len(stored)) + 1):
                    if not self.state.filling(a.chat_id):
                        break
                    self.apply(self.state.stored_event(a.chat_id, seq, stored[seq - 1]))
                self.apply(self.state.fill_done(a.chat_id))
            elif isinstance(a, Route):
                self.routed.add(a.chat_id)
            else:
                self.routed.discard(a.chat_id)

    def bus(self, seq: int, chat_id: int = CHAT) -> None:
        frame = self.store[chat_id][seq - 1]
        joins = frame.startswith('{"type":"member.joined"') and json.loads(frame)["data"]["user"]["id"] == ME
        if joins:
            self.routed.add(chat_id)  # the hub routes the socket to a chat its user joins, then offers the event
        self.apply(self.state.chat_event(ChatEvent(chat_id, seq, frame, joins=joins, leaves=is_own_part(frame, ME))))

    def sent_seqs(self) -> list[int]:
        return [seq_of(f) for f in self.sent]


def driver(frames: list[str], start: int | None = 0) -> Driver:
    d = Driver(DeliveryState(ME), {CHAT: frames}, routed={CHAT})
    if start is not None:
        d.state.start_at(CHAT, start)
    return d


# ---- examples ------------------------------------------------------------------------------------------------
def test_in_order_events_go_out_live_and_move_the_cursor() -> None:
    s = DeliveryState(ME)
    s.start_at(CHAT, 4)
    assert s.chat_event(ChatEvent(CHAT, 5, "f5")) == [Send("f5", live=True)]
    assert s.chat_event(ChatEvent(CHAT, 6, "f6")) == [Send("f6", live=True)]
    assert s.cursor == {CHAT: 6}


def test_duplicates_and_older_events_are_dropped() -> None:
    s = DeliveryState(ME)
    s.start_at(CHAT, 4)
    assert s.chat_event(ChatEvent(CHAT, 5, "f5")) == [Send("f5", live=True)]
    assert s.chat_event(ChatEvent(CHAT, 5, "f5")) == []
    assert s.chat_event(ChatEvent(CHAT, 3, "f3")) == []
    assert s.cursor == {CHAT: 5}


def test_a_chat_without_cursor_takes_what_comes() -> None:
    s = DeliveryState(ME)
    assert s.chat_event(ChatEvent(CHAT, 9, "f9")) == [Send("f9", live=True)]
    assert s.cursor == {CHAT: 9}


def test_a_gap_is_filled_before_the_event_that_revealed_it() -> None:
    s = DeliveryState(ME)
    s.start_at(CHAT, 2)
    assert s.chat_event(ChatEvent(CHAT, 6, "f6")) == [Fill(CHAT, 2, 5)]
    assert s.filling(CHAT)
    assert s.chat_event(ChatEvent(OTHER + 100, 1, "o1")) == [Send("o1", live=True)]  # other chats go on
    assert [s.stored_event(CHAT, q, message(q)) for q in (3, 4, 5)] == [[Send(message(q))] for q in (3, 4, 5)]
    assert s.fill_done(CHAT) == [Send("f6", live=True)]
    assert not s.filling(CHAT)
    assert s.chat_event(ChatEvent(CHAT, 4, "f4")) == []  # the late bus copy of a filled event
    assert s.cursor[CHAT] == 6


def test_a_fill_that_finds_nothing_still_delivers_the_event() -> None:
    s = DeliveryState(ME)
    s.start_at(CHAT, 2)
    assert s.chat_event(ChatEvent(CHAT, 4, "f4")) == [Fill(CHAT, 2, 3)]
    assert s.fill_done(CHAT) == [Send("f4", live=True)]


def test_one_fill_per_chat_at_a_time() -> None:
    s = DeliveryState(ME)
    s.start_at(CHAT, 0)
    s.chat_event(ChatEvent(CHAT, 3, "f3"))
    with pytest.raises(RuntimeError):
        s.resume(CHAT, 0, None)


def test_live_own_leave_unroutes_and_silences_the_chat_until_a_rejoin() -> None:
    s = DeliveryState(ME)
    s.start_at(CHAT, 0)
    assert s.chat_event(ChatEvent(CHAT, 1, parted(1), leaves=True)) == [Send(parted(1), live=True), Unroute(CHAT)]
    assert s.parted == {CHAT}
    assert s.chat_event(ChatEvent(CHAT, 2, "after-leave")) == []
    assert s.chat_event(ChatEvent(CHAT, 5, "gap-after-leave")) == []  # no fill while out of the chat
    assert s.chat_event(ChatEvent(CHAT, 7, joined(7), joins=True)) == [Send(joined(7), live=True), Fill(CHAT, 7, None)]
    assert s.parted == frozenset()
    assert s.stored_event(CHAT, 8, message(8)) == [Send(message(8))]
    assert s.fill_done(CHAT) == []
    assert s.chat_event(ChatEvent(CHAT, 9, "f9")) == [Send("f9", live=True)]


def test_a_fill_stops_at_the_own_removal_and_drops_the_event_past_it() -> None:
    s = DeliveryState(ME)
    s.start_at(CHAT, 1)
    assert s.chat_event(ChatEvent(CHAT, 5, "f5")) == [Fill(CHAT, 1, 4)]
    assert s.stored_event(CHAT, 2, message(2)) == [Send(message(2))]
    assert s.stored_event(CHAT, 3, parted(3, type_="member.removed")) == [
        Send(parted(3, type_="member.removed")),
        Unroute(CHAT),
    ]
    assert not s.filling(CHAT)
    assert s.stored_event(CHAT, 4, message(4)) == []  # read past the removal: not sent
    assert s.fill_done(CHAT) == []
    assert s.cursor[CHAT] == 3


def test_someone_elses_leave_is_an_ordinary_event() -> None:
    assert not is_own_part(parted(3, user_id=OTHER), ME)
    assert is_own_part(parted(3), ME)
    assert not is_own_part(message(3), ME)
    s = DeliveryState(ME)
    s.start_at(CHAT, 2)
    assert s.chat_event(ChatEvent(CHAT, 3, parted(3, user_id=OTHER))) == [Send(parted(3, user_id=OTHER), live=True)]


def test_a_join_after_a_gap_fills_behind_it() -> None:
    d = driver([message(1), message(2), joined(3), message(4), message(5)], start=1)
    d.bus(3)
    assert d.sent_seqs() == [2, 3, 4, 5]
    assert d.fills == [Fill(CHAT, 1, 2), Fill(CHAT, 3, None)]


def test_resume_reads_from_the_cursor_and_stops_at_left_seq() -> None:
    d = driver([message(1), message(2), parted(3), message(4)], start=None)
    d.apply(d.state.resume(CHAT, 1, 3))
    assert d.sent_seqs() == [2, 3] and d.live == []
    assert d.routed == set() and d.state.cursor == {CHAT: 3}
    d.bus(4)
    assert d.sent_seqs() == [2, 3]


def test_to_device_messages_go_out_once_whatever_their_order() -> None:
    s = DeliveryState(ME)
    assert s.device_message(7, "d7") == [Send("d7")]
    assert s.device_message(5, "d5") == [Send("d5")]
    assert s.device_message(7, "d7") == []
    assert s.to_device_sent == {5, 7}


def test_sync_routes_chats_joined_meanwhile_and_fills_the_rest() -> None:
    s = DeliveryState(ME)
    s.start_at(CHAT, 4)
    s.start_at(11, 9)
    actions = s.sync(
        [
            Membership(CHAT, joined_seq=1, left_seq=None, last_seq=7),  # routed, behind: fill from the cursor
            Membership(11, joined_seq=1, left_seq=None, last_seq=9),  # routed, up to date: nothing
            Membership(12, joined_seq=3, left_seq=None, last_seq=5),  # joined while the bus was away
            Membership(13, joined_seq=1, left_seq=4, last_seq=8),  # left, not routed: nothing
        ],
        routed={CHAT, 11},
    )
    assert actions == [Fill(CHAT, 4, None), Route(12), Fill(12, 2, None)]


def test_sync_restarts_a_parted_chat_at_the_join() -> None:
    s = DeliveryState(ME)
    s.start_at(CHAT, 0)
    s.chat_event(ChatEvent(CHAT, 1, parted(1), leaves=True))
    assert s.sync([Membership(CHAT, joined_seq=6, left_seq=None, last_seq=8)], routed=set()) == [
        Route(CHAT),
        Fill(CHAT, 5, None),
    ]
    assert s.parted == frozenset()


def test_sync_leaves_a_parted_chat_alone() -> None:
    s = DeliveryState(ME)
    s.start_at(CHAT, 0)
    s.chat_event(ChatEvent(CHAT, 1, parted(1), leaves=True))
    assert s.sync([Membership(CHAT, joined_seq=1, left_seq=1, last_seq=8)], routed={CHAT}) == []


# ---- properties ----------------------------------------------------------------------------------------------
@st.composite
def deliveries(draw: Any) -> tuple[int, int, list[int]]:
    """A chat of n stored events, a cursor, and what the bus brings: any of them, duplicated, in any order."""
    n = draw(st.integers(1, 30))
    start = draw(st.integers(0, n))
    arrivals = draw(st.lists(st.integers(1, n), max_size=60))
    return n, start, arrivals


@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_each_event_once_in_order_without_gaps(case: tuple[int, int, list[int]]) -> None:
    n, start, arrivals = case
    d = driver([message(q) for q in range(1, n + 1)], start=start)
    for seq in arrivals:
        d.bus(seq)
    newest = max([start, *arrivals])
    assert d.sent_seqs() == list(range(start + 1, newest + 1))
    assert d.state.cursor[CHAT] == newest
    assert not d.state.filling(CHAT)
    # live frames are exactly the arrivals that advanced the cursor
    advanced = [q for i, q in enumerate(arrivals) if q > max([start, *arrivals[:i]])]
    assert [seq_of(f) for f in d.live] == advanced


@st.composite
def leave_and_rejoin(draw: Any) -> tuple[list[str], int, int, int | None, list[int]]:
    n = draw(st.integers(2, 25))
    part = draw(st.integers(1, n))
    rejoin = draw(st.one_of(st.none(), st.integers(part + 1, n + 1))) if part < n else None
    rejoin = None if rejoin == n + 1 else rejoin
    frames = [message(q) for q in range(1, n + 1)]
    frames[part - 1] = parted(part, type_=draw(st.sampled_from(["member.left", "member.removed"])))
    if rejoin is not None:
        frames[rejoin - 1] = joined(rejoin)
    start = draw(st.integers(0, part - 1))
    arrivals = draw(st.lists(st.integers(1, n), max_size=50))
    return frames, start, part, rejoin, arrivals


@settings(max_examples=300, deadline=None)
@given(leave_and_rejoin())
def test_nothing_between_a_leave_and_the_rejoin(case: tuple[list[str], int, int, int | None, list[int]]) -> None:
    frames, start, part, rejoin, arrivals = case
    d = driver(frames, start=start)
    for seq in arrivals:
        d.bus(seq)
    sent = d.sent_seqs()
    assert sent == sorted(set(sent))  # in order, once each
    before = [q for q in sent if q <= part]
    assert before == list(range(start + 1, max(before, default=start) + 1))  # no gap before the leave
    after = [q for q in sent if q > part]
    if rejoin is None or after == []:
        assert after == []
    else:
        assert after == list(range(rejoin, len(frames) + 1))  # the stream restarts at the join, all of it
    if sent and sent[-1] >= part:
        assert part in sent  # the leave itself goes out before the chat falls silent
    assert (CHAT in d.routed) == (not d.state.parted)
