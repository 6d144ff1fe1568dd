"""The SDK's resume cursor as a pure state machine: frames in, decisions out (no socket, no file, no clock).

``LiveStream`` drives it. The cursor (chat id → last seq) moves when a frame is handed to the consumer,
not when it arrives: frames wait in a queue, and one that was never consumed must come again after a
restart. What arrives twice (the server resends from the cursor after a reconnect while older copies
still wait in the queue, or a frame older than the cursor) is a duplicate and is not handed out again.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from melo_protocol.wire.realtime import ChatEventFrame, UnknownFrame


def position(frame: object) -> tuple[int, int] | None:
    """(chat id, seq) of a resumable frame: a chat event, or a newer server's frame that has both."""
    if isinstance(frame, ChatEventFrame):
        return frame.chat_id, frame.seq
    if isinstance(frame, UnknownFrame) and frame.chat_id is not None and frame.seq is not None:
        return frame.chat_id, frame.seq
    return None


@dataclass(slots=True)
class ResumeState:
    """``cursor`` None: start from now (no backlog), until the server's ``caught_up`` names a position."""

    cursor: dict[str, int] | None = None
    live: bool = False  # caught up on the current connection
    # chat id → the highest seq received (queued for the consumer or handed out): what comes again is a duplicate
    _received: dict[str, int] = field(default_factory=dict)

    def connecting(self) -> dict[str, int] | None:
        """A connection (or reconnection) starts: the cursor its ``auth`` frame names."""
        self.live = False
        return None if self.cursor is None else dict(self.cursor)

    def disconnected(self) -> None:
        self.live = False

    def caught_up(self, server_cursor: Mapping[str, int]) -> bool:
        """The backlog is delivered. True when the cursor was adopted from the server (save it now): a
        client that started from now resumes from here next time, even when nothing arrives meanwhile."""
        self.live = True
        if self.cursor is not None:
            return False
        self.cursor = {str(k): int(v) for k, v in server_cursor.items()}
        return True

    def received(self, frame: object) -> bool:
        """A frame arrived: True to queue it for the consumer, False for a duplicate."""
        pos = position(frame)
        if pos is None:
            return True
        key, seq = str(pos[0]), pos[1]
        seen = max(self._received.get(key, -1), -1 if self.cursor is None else self.cursor.get(key, -1))
        if seq <= seen:
            return False
        self._received[key] = seq
        return True

    def handed_out(self, frame: object) -> bool:
        """The consumer took a frame: True when the cursor moved (then it should be saved)."""
        pos = position(frame)
        if pos is None:
            return False
        if self.cursor is None:
            self.cursor = {}
        key, seq = str(pos[0]), pos[1]
        if seq <= self.cursor.get(key, -1):
            return False
        self.cursor[key] = seq
        return True
