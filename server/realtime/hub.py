"""This worker's live sockets, routed by chat, user and session; the bus dispatches into it."""

import asyncio
import logging
import secrets
from collections.abc import Iterable
from typing import Protocol

from server.realtime.bus import BusEvent

log = logging.getLogger("melo.hub")


class Socket(Protocol):
    """What the hub needs of a live socket (``server.realtime.connection.Connection`` is one)."""

    id: str  # this socket's presence entry
    user_id: int
    session_id: str
    device_id: str
    chats: set[int]  # the chats routed to it: the hub keeps this
    finished: asyncio.Event

    def offer(self, ev: BusEvent) -> None:
        """Queue an event without waiting (a socket whose queue is full closes itself)."""

    def revoke(self, reason: str) -> None: ...

    def request_close(self, code: int, reason: str) -> None: ...

    def abort_transport(self) -> None: ...


class Hub:
    def __init__(self) -> None:
        self.worker_id = secrets.token_hex(4)
        self.by_chat: dict[int, set[Socket]] = {}
        self.by_user: dict[int, set[Socket]] = {}
        self.by_session: dict[str, set[Socket]] = {}
        self.by_device: dict[str, set[Socket]] = {}
        self.delivered = 0

    def __len__(self) -> int:
        return sum(len(s) for s in self.by_session.values())

    def connections(self) -> list[Socket]:
        return [c for conns in self.by_session.values() for c in conns]

    def add(self, conn: Socket, chat_ids: Iterable[int]) -> None:
        self.by_user.setdefault(conn.user_id, set()).add(conn)
        self.by_session.setdefault(conn.session_id, set()).add(conn)
        self.by_device.setdefault(conn.device_id, set()).add(conn)
        for chat_id in chat_ids:
            self._route(conn, chat_id)

    def remove(self, conn: Socket) -> None:
        for index, key in ((self.by_user, conn.user_id), (self.by_session, conn.session_id),
                           (self.by_device, conn.device_id)):
            conns = index.get(key)  # type: ignore[attr-defined]
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del index[key]  # type: ignore[attr-defined]
        for chat_id in list(conn.chats):
            self._unroute(conn, chat_id)

    def route(self, conn: Socket, chat_id: int) -> None:
        self._route(conn, chat_id)

    def unroute(self, conn: Socket, chat_id: int) -> None:
        self._unroute(conn, chat_id)

    def _route(self, conn: Socket, chat_id: int) -> None:
        conn.chats.add(chat_id)
        self.by_chat.setdefault(chat_id, set()).add(conn)

    def _unroute(self, conn: Socket, chat_id: int) -> None:
        conn.chats.discard(chat_id)
        conns = self.by_chat.get(chat_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.by_chat[chat_id]

    def dispatch(self, ev: BusEvent) -> None:
        """Runs on the event loop; never awaits: each socket has its own bounded queue."""
        if ev.kind == "chat" and ev.chat_id is not None:
            for uid in ev.member_add:
                for conn in self.by_user.get(uid, ()):
                    self._route(conn, ev.chat_id)
            for conn in list(self.by_chat.get(ev.chat_id, ())):
                conn.offer(ev)
            for uid in ev.member_remove:
                for conn in list(self.by_user.get(uid, ())):
                    self._unroute(conn, ev.chat_id)
        elif ev.kind == "typing" and ev.chat_id is not None:
            for conn in list(self.by_chat.get(ev.chat_id, ())):
                if conn.user_id != ev.exclude_user:
                    conn.offer(ev)
        elif ev.kind == "presence":
            for uid in ev.user_ids:
                for conn in list(self.by_user.get(uid, ())):
                    conn.offer(ev)
        elif ev.kind == "sync":  # the bus may have lost messages: every socket checks the database
            for conn in self.connections():
                conn.offer(ev)
        elif ev.kind == "device":  # to-device messages and key notices, addressed by device id
            for device_id in ev.session_ids:
                for conn in list(self.by_device.get(device_id, ())):
                    conn.offer(ev)
        elif ev.kind == "revoke":
            for sid in ev.session_ids:
                for conn in list(self.by_session.get(sid, ())):
                    conn.revoke("session revoked")

    async def close_all(self, code: int, reason: str, timeout: float = 5.0) -> None:
        conns = self.connections()
        for conn in conns:
            conn.request_close(code, reason)
        if conns:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.gather(*(c.finished.wait() for c in conns), return_exceptions=True)
            except TimeoutError:
                log.warning("%d sockets did not close in time; dropping them", sum(not c.finished.is_set()
                                                                                    for c in conns))
                for c in conns:
                    if not c.finished.is_set():
                        c.abort_transport()
