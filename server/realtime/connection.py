"""One authenticated WebSocket: a bounded queue of events, in-order delivery per chat, commands."""

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from starlette.websockets import WebSocket, WebSocketDisconnect

from melo_protocol.wire import ErrorCode
from melo_protocol.wire.realtime import (
    MAX_FRAME_BYTES,
    AuthCmd,
    CloseCode,
    client_command_adapter,
)
from server.chats import events
from server.core.errors import ApiError
from server.core.jwt_keys import AccessClaims
from server.db.models import Chat, ChatMember
from server.realtime.bus import BusEvent
from server.realtime.delivery import Action, ChatEvent, DeliveryState, Fill, Membership, Route, Send
from server.realtime.frames import error_frame, session_revoked_frame, validation_details
from server.state import AppState

log = logging.getLogger("melo.ws")

REPLAY_BATCH = 500
CLOSE_TIMEOUT_S = 1.0  # to hand the close frame to a peer before dropping the transport
CLOSE_BACKSTOP_S = 5.0  # a closed socket's transport is aborted by then if the peer never finished

# Runs one valid command for a socket; the answer frame (None: no answer). The router injects
# ``server.realtime.commands.run``: this module does not know the commands.
CommandRunner = Callable[["Connection", Any], Awaitable[str | None]]


class InvalidFrames:
    """The invalid frames a socket sent lately: more than ``limit`` within ``window_s`` seconds is a broken or
    hostile client (close 4009); a few now and then on a socket that lives for days are not."""

    __slots__ = ("_times", "limit", "window_s")

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=limit + 1)

    def count(self, now: float) -> bool:
        """Count one invalid frame seen at ``now`` (seconds); True when this one is over the limit."""
        self._times.append(now)
        return len(self._times) > self.limit and now - self._times[0] < self.window_s


class Connection:
    def __init__(self, ws: WebSocket, state: AppState, *, claims: AccessClaims, username: str,
                 run_command: CommandRunner) -> None:
        self.id = secrets.token_hex(8)
        self.ws = ws
        self.state = state
        self.claims = claims  # of the token that opened the socket; its session is checked before each command
        self.user_id = claims.user_id
        self.username = username
        self.session_id = claims.session_id
        self.device_id = claims.device_id
        self.run_command = run_command
        self.chats: set[int] = set()  # the chats the hub routes to this socket (the hub keeps it)
        self.delivery = DeliveryState(claims.user_id)
        self.queue: asyncio.Queue[BusEvent] = asyncio.Queue(maxsize=state.settings.ws_queue_size)
        self.send_lock = asyncio.Lock()
        self.close_requested = asyncio.Event()
        self.close_code = 1000
        self.close_reason = ""
        self.finished = asyncio.Event()
        self.invalid_frames: InvalidFrames | None = None  # made at the first one: most sockets never send any

    # ---- called by the hub (synchronously, never blocking) ------------------------------------------
    def offer(self, ev: BusEvent) -> None:
        if self.close_requested.is_set():
            return
        try:
            self.queue.put_nowait(ev)
        except asyncio.QueueFull:
            # A consumer that falls behind is cut loose, never allowed to stall others or grow memory.
            self.request_close(CloseCode.RESYNC, "too slow: reconnect and resume from your cursor")

    def revoke(self, reason: str) -> None:
        self.request_close(CloseCode.SESSION_REVOKED, reason)

    def request_close(self, code: int, reason: str) -> None:
        if not self.close_requested.is_set():
            self.close_code, self.close_reason = code, reason
            self.close_requested.set()

    # ---- sending ------------------------------------------------------------------------------------
    async def send_text(self, text: str) -> None:
        async with self.send_lock:
            await self.ws.send_text(text)

    async def apply(self, actions: list[Action]) -> None:
        """Carry out what the delivery state asked for, in order."""
        for action in actions:
            if isinstance(action, Send):
                await self.send_text(action.frame)
                if action.live:
                    self.state.hub.delivered += 1
            elif isinstance(action, Fill):
                await self._fill(action)
            elif isinstance(action, Route):
                self.state.hub.route(self, action.chat_id)
            else:
                self.state.hub.unroute(self, action.chat_id)

    async def _fill(self, fill: Fill) -> None:
        """Read a chat's stored events for the delivery state, a batch at a time, while it wants them."""
        after, chat_id = fill.after, fill.chat_id
        while self.delivery.filling(chat_id):
            async with self.state.sessions() as db:
                batch = await events.replay(db, chat_id, after, fill.up_to, REPLAY_BATCH,
                                            data_keys=self.state.data_keys)
            for seq, frame in batch:
                await self.apply(self.delivery.stored_event(chat_id, seq, frame))
                after = seq
                if not self.delivery.filling(chat_id):
                    break
            if len(batch) < REPLAY_BATCH:
                break
        await self.apply(self.delivery.fill_done(chat_id))

    async def deliver_loop(self) -> None:
        """Events in order per chat, exactly once (the rules are ``DeliveryState``'s)."""
        while True:
            ev = await self.queue.get()
            if ev.kind == "sync":
                await self.sync()
            elif ev.kind == "chat" and ev.chat_id is not None and ev.seq is not None:
                chat_event = ChatEvent(ev.chat_id, ev.seq, ev.frame, joins=self.user_id in ev.member_add,
                                       leaves=self.user_id in ev.member_remove)
                await self.apply(self.delivery.chat_event(chat_event))
            elif ev.kind == "device" and ev.seq is not None:
                await self.apply(self.delivery.device_message(ev.seq, ev.frame))
            else:
                await self.apply([Send(ev.frame, live=True)])

    async def sync(self) -> None:
        """After bus messages may have been lost (the bus reconnected): compare every chat of this user
        with the database and send what is missing, routing chats joined meanwhile."""
        async with self.state.sessions() as db:
            rows = (await db.execute(
                select(ChatMember.chat_id, ChatMember.joined_seq, ChatMember.left_seq, Chat.last_seq)
                .join(Chat, Chat.id == ChatMember.chat_id)
                .where(ChatMember.user_id == self.user_id)
            )).all()
        memberships = [Membership(int(r.chat_id), int(r.joined_seq), None if r.left_seq is None else int(r.left_seq),
                                  int(r.last_seq)) for r in rows]
        await self.apply(self.delivery.sync(memberships, routed=self.chats))

    # ---- receiving ----------------------------------------------------------------------------------
    async def read_loop(self) -> None:
        settings = self.state.settings
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=settings.ws_idle_timeout_s)
            except TimeoutError:
                self.request_close(CloseCode.IDLE_TIMEOUT, "idle timeout: send ping frames")
                return
            if message["type"] == "websocket.disconnect":
                self.request_close(1000, "client closed")
                return
            raw = message.get("text")
            if raw is None:
                raw_bytes = message.get("bytes") or b""
                try:
                    raw = raw_bytes.decode("utf-8")
                except UnicodeDecodeError:
                    await self._bad_frame(ErrorCode.BAD_REQUEST, "frames are UTF-8 JSON text")
                    continue
            if len(raw) > MAX_FRAME_BYTES:
                # uvicorn refuses these itself (ws_max_size, see server.asgi); this holds under any other server
                self.request_close(CloseCode.MESSAGE_TOO_BIG, f"frame larger than {MAX_FRAME_BYTES} bytes")
                return
            await self.handle_frame(raw)
            if self.close_requested.is_set():
                return

    async def _bad_frame(self, code: str, message: str, req_id: str | None = None,
                         details: dict[str, Any] | None = None) -> None:
        """An invalid frame: answered, and counted towards close code 4009."""
        await self.send_text(error_frame(code, message, req_id, details))
        if self.invalid_frames is None:
            settings = self.state.settings
            self.invalid_frames = InvalidFrames(settings.ws_max_bad_frames, settings.ws_bad_frames_window_s)
        if self.invalid_frames.count(monotonic()):
            self.request_close(CloseCode.BAD_FRAMES, "too many invalid frames")

    async def handle_frame(self, raw: str) -> None:
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            await self._bad_frame(ErrorCode.MALFORMED_JSON, "frame is not valid JSON")
            return
        req_id = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
        try:
            cmd = client_command_adapter.validate_python(obj)
        except ValidationError as exc:
            unknown = isinstance(obj, dict) and any(e.get("type") == "union_tag_invalid" for e in exc.errors())
            await self._bad_frame(ErrorCode.BAD_REQUEST if unknown else ErrorCode.VALIDATION_ERROR,
                                  "unknown op" if unknown else "invalid command", req_id[:64] if req_id else None,
                                  validation_details(exc))
            return
        if isinstance(cmd, AuthCmd):  # was answered "internal error" by the command runner
            await self._bad_frame(ErrorCode.BAD_REQUEST, "this socket is already authenticated", cmd.id)
            return
        try:
            await self.state.ws_limiter.hit(self.state.settings.rate_ws_commands, "ws", self.session_id)
        except ApiError as exc:  # rate_limited: a valid command, refused for now; not counted as invalid
            await self.send_text(error_frame(exc.code, exc.message, cmd.id, exc.details))
            return
        try:
            reply = await self.run_command(self, cmd)
        except ApiError as exc:
            await self.send_text(error_frame(exc.code, exc.message, cmd.id, exc.details))
            return
        except Exception:
            log.exception("command %s failed", getattr(cmd, "op", "?"))
            await self.send_text(error_frame(ErrorCode.INTERNAL, "internal error", cmd.id))
            return
        if reply is not None:
            await self.send_text(reply)

    async def wait_closed(self) -> None:
        await self.close_requested.wait()

    async def close(self) -> None:
        frame = None
        if self.close_code == CloseCode.SESSION_REVOKED:
            frame = session_revoked_frame(self.close_reason)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                if frame:
                    await self.ws.send_text(frame)
                await self.ws.close(code=self.close_code, reason=self.close_reason[:120])
        except TimeoutError:
            # The peer does not read: the close frame cannot even be queued behind what it left unread.
            # A graceful close would wait for that buffer to drain, forever; drop the connection instead.
            self.abort_transport()
            return
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the peer is gone
        # A peer that stops reading after the close frame went out would keep the transport (and its
        # buffer) open just as long: a backstop abort, a no-op on a transport already closed.
        transport = self._transport()
        if transport is not None:
            asyncio.get_running_loop().call_later(CLOSE_BACKSTOP_S, _drop, transport)

    def _transport(self) -> asyncio.Transport | None:
        """The server's TCP transport under this socket.

        ASGI does not expose it; the ``send`` callable that reached us is the server protocol's bound
        method, wrapped by middleware closures. Follow them (a few levels) to the protocol's transport.
        """
        seen: set[int] = set()
        todo: list[tuple[Any, int]] = [(getattr(self.ws, "_send", None), 0)]
        while todo:
            obj, depth = todo.pop()
            if obj is None or id(obj) in seen or depth > 6:
                continue
            seen.add(id(obj))
            transport = getattr(getattr(obj, "__self__", None), "transport", None)
            if isinstance(transport, asyncio.Transport):
                return transport
            for cell in getattr(obj, "__closure__", None) or ():
                with contextlib.suppress(ValueError):
                    if callable(cell.cell_contents):
                        todo.append((cell.cell_contents, depth + 1))
        return None

    def abort_transport(self) -> None:
        transport = self._transport()
        if transport is not None:
            _drop(transport)


def _drop(transport: asyncio.Transport) -> None:
    """Reset the TCP connection: no graceful FIN after a buffer the peer will never read (the kernel would
    keep that buffer for minutes), the memory is freed now and the peer learns at once."""
    if transport.is_closing() and transport.get_extra_info("socket") is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.fileno() >= 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
