"""What one socket delivers, and when: a sans-I/O state machine (events in, actions out).

``DeliveryState`` holds a socket's per-chat cursor, its gap fill in progress and the chats it saw its
user leave. It never touches a socket, the database, the event loop or a clock: ``Connection`` feeds it
what arrives (bus events, stored events read for a fill, membership rows) and carries out the actions
it returns, in order (send a frame, read stored events, route or unroute a chat).

The rules: within a chat, events go out in ``seq`` order, exactly once. A late duplicate is dropped; a
gap is filled from the database before the event that revealed it. After the user's own removal from a
chat (``member.left``/``member.removed`` naming them) nothing more of it goes out until an event that
adds them back (a ``member.joined``), from which the stream restarts.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_PART_PREFIXES = ('{"type":"member.left"', '{"type":"member.removed"')


# ---- actions (out) ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    """Send this frame. ``live``: a live event (counted as delivered), not one read back for a fill."""

    frame: str
    live: bool = False


@dataclass(frozen=True, slots=True)
class Fill:
    """Read the chat's stored events after ``after`` (up to ``up_to``, or all) and feed each to
    ``stored_event`` while ``filling`` says so, then call ``fill_done``."""

    chat_id: int
    after: int
    up_to: int | None


@dataclass(frozen=True, slots=True)
class Route:
    """Route the chat's live events to this socket."""

    chat_id: int


@dataclass(frozen=True, slots=True)
class Unroute:
    """Stop routing the chat's live events to this socket."""

    chat_id: int


Action = Send | Fill | Route | Unroute


# ---- events (in) -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChatEvent:
    """A chat event from the bus: ``joins``/``leaves`` say whether it adds or removes this socket's user."""

    chat_id: int
    seq: int
    frame: str
    joins: bool = False
    leaves: bool = False


@dataclass(frozen=True, slots=True)
class Membership:
    """One of the user's chats as the database has it (for ``sync``)."""

    chat_id: int
    joined_seq: int
    left_seq: int | None
    last_seq: int


def is_own_part(frame: str, user_id: int) -> bool:
    """Whether a stored frame is this user's own ``member.left``/``member.removed``."""
    if not frame.startswith(_PART_PREFIXES):
        return False
    user = json.loads(frame).get("data", {}).get("user")
    return isinstance(user, dict) and user.get("id") == user_id


@dataclass(slots=True)
class _PendingFill:
    then: ChatEvent | None  # the live event that revealed the gap, delivered once the gap is filled
    open: bool = True  # False once the fill reached the user's own removal: read no further


@dataclass(slots=True)
class DeliveryState:
    user_id: int
    _cursor: dict[int, int] = field(default_factory=dict)
    _parted: set[int] = field(default_factory=set)  # chats this socket saw its own removal from
    _fills: dict[int, _PendingFill] = field(default_factory=dict)  # chat id → its gap fill in progress
    _to_device_sent: set[int] = field(default_factory=set)

    # ---- reading --------------------------------------------------------------------------------------
    @property
    def cursor(self) -> Mapping[int, int]:
        """Chat id → the last seq sent (or known to the client)."""
        return self._cursor

    @property
    def parted(self) -> frozenset[int]:
        return frozenset(self._parted)

    @property
    def to_device_sent(self) -> set[int]:
        """To-device ids sent on this socket (the only ones a ``to_device_ack`` may delete)."""
        return self._to_device_sent

    def filling(self, chat_id: int) -> bool:
        """Whether the fill of this chat wants more stored events."""
        fill = self._fills.get(chat_id)
        return fill is not None and fill.open

    # ---- at connect -----------------------------------------------------------------------------------
    def start_at(self, chat_id: int, seq: int) -> None:
        """The client has (or skips) everything of the chat up to ``seq``: live events continue from there."""
        self._cursor[chat_id] = seq

    def resume(self, chat_id: int, after: int, up_to: int | None) -> list[Action]:
        """Send what the client missed of a chat: the stored events after ``after`` (up to ``up_to``)."""
        return [self._start_fill(chat_id, after, up_to, then=None)]

    # ---- events ---------------------------------------------------------------------------------------
    def chat_event(self, ev: ChatEvent) -> list[Action]:
        chat_id = ev.chat_id
        if chat_id in self._parted:
            if not ev.joins:
                return []  # a late copy from before the removal (already sent by a fill) or not ours at all
            self._parted.discard(chat_id)  # back in: the stream restarts at the join, no fill before it
        else:
            last = self._cursor.get(chat_id)
            if last is not None:
                if ev.seq <= last:
                    return []  # a duplicate, or older than what the client has
                if ev.seq > last + 1:  # a bus message went missing or raced: read what lies between
                    return [self._start_fill(chat_id, last, ev.seq - 1, then=ev)]
        return self._deliver(ev)

    def stored_event(self, chat_id: int, seq: int, frame: str) -> list[Action]:
        """One stored event read for the fill in progress, in seq order."""
        if not self.filling(chat_id) or seq <= self._cursor.get(chat_id, -1):
            return []
        self._cursor[chat_id] = seq
        if not is_own_part(frame, self.user_id):
            return [Send(frame)]
        # What follows the user's own removal is not theirs, even when a lost or late bus message left
        # the socket routed to the chat.
        self._fills[chat_id].open = False
        return [Send(frame), *self._part(chat_id)]

    def fill_done(self, chat_id: int) -> list[Action]:
        """The fill of this chat read everything it asked for (or stopped at the user's removal)."""
        fill = self._fills.pop(chat_id, None)
        if fill is None:
            return []
        if fill.then is None or chat_id in self._parted:
            return []  # the fill reached our removal: the event that revealed the gap is past it
        return self._deliver(fill.then)

    def device_message(self, message_id: int, frame: str) -> list[Action]:
        """A to-device message: ids are unique but may commit out of order, so remember which were sent."""
        if message_id in self._to_device_sent:  # the catch-up may already have sent it
            return []
        self._to_device_sent.add(message_id)
        return [Send(frame)]

    def sync(self, rows: Iterable[Membership], routed: Iterable[int]) -> list[Action]:
        """After bus messages may have been lost: compare with the database and read what is missing,
        routing chats joined meanwhile. ``routed``: the chats this socket is routed to now."""
        routed_now = set(routed)
        actions: list[Action] = []
        for r in rows:
            from_join = r.joined_seq - 1
            if r.left_seq is None and r.chat_id not in routed_now:  # joined while the bus was away
                if r.chat_id in self._parted:
                    after = from_join
                else:
                    after = max(self._cursor.get(r.chat_id, from_join), from_join)
                self._parted.discard(r.chat_id)
                actions.append(Route(r.chat_id))
            elif r.chat_id in self._parted or r.chat_id not in routed_now:
                continue
            else:
                after = self._cursor.get(r.chat_id, from_join)
            if r.last_seq > after:
                actions.append(self._start_fill(r.chat_id, after, r.left_seq, then=None))
        return actions

    # ---- inside -------------------------------------------------------------------------------------------
    def _start_fill(self, chat_id: int, after: int, up_to: int | None, then: ChatEvent | None) -> Fill:
        if chat_id in self._fills:
            raise RuntimeError(f"a fill of chat {chat_id} is still in progress")
        self._fills[chat_id] = _PendingFill(then)
        self._cursor[chat_id] = after
        return Fill(chat_id, after, up_to)

    def _deliver(self, ev: ChatEvent) -> list[Action]:
        self._cursor[ev.chat_id] = ev.seq
        actions: list[Action] = [Send(ev.frame, live=True)]
        if ev.leaves:
            actions += self._part(ev.chat_id)
        elif ev.joins:
            # Events after the join that overtook it on the bus found this socket not yet routed to the
            # chat and were not offered to it: read them now (usually none).
            actions.append(self._start_fill(ev.chat_id, ev.seq, None, then=None))
        return actions

    def _part(self, chat_id: int) -> list[Action]:
        self._parted.add(chat_id)
        return [Unroute(chat_id)]
