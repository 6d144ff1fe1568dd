"""One authenticated WebSocket: a bounded queue of events, in-order delivery per chat, commands."""

import asyncio
import json
import logging
import secrets
from typing import Any

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from melo_protocol.wire import ErrorCode
from melo_protocol.wire.realtime import (
    MAX_FRAME_BYTES,
    CloseCode,
    client_command_adapter,
)
from server.chats import events
from server.core.errors import ApiError
from server.realtime.bus import BusEvent
from server.state import AppState

log = logging.getLogger("melo.ws")


def error_frame(code: str, message: str, req_id: str | None = None, details: dict[str, Any] | None = None) -> str:
    return json.dumps({"type": "error", "id": req_id,
                       "error": {"code": code, "message": message, "details": details or {}}})


class Connection:
    def __init__(self, ws: WebSocket, state: AppState, *, user_id: int, username: str, session_id: str,
                 device_id: str) -> None:
        self.id = secrets.token_hex(8)
        self.ws = ws
        self.state = state
        self.user_id = user_id
        self.username = username
        self.session_id = session_id
        self.device_id = device_id
        self.chats: set[int] = set()
        self.cursor: dict[int, int] = {}
        self.queue: asyncio.Queue[BusEvent] = asyncio.Queue(maxsize=state.settings.ws_queue_size)
        self.send_lock = asyncio.Lock()
        self.close_requested = asyncio.Event()
        self.close_code = 1000
        self.close_reason = ""
        self.finished = asyncio.Event()
        self.bad_frames = 0

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

    async def send_backlog(self, chat_id: int, after: int, up_to: int | None) -> int:
        """Send stored events of a chat after ``after``; returns the last seq sent (or ``after``)."""
        last = after
        while True:
            async with self.state.sessions() as db:
                batch = await events.replay(self.state, db, chat_id, last, up_to, 500)
            for seq, frame in batch:
                await self.send_text(frame)
                last = seq
            if len(batch) < 500:
                return last

    async def deliver_loop(self) -> None:
        """Events in order per chat, exactly once: late duplicates dropped, gaps filled from the DB."""
        while True:
            ev = await self.queue.get()
            if ev.kind == "chat" and ev.chat_id is not None and ev.seq is not None:
                last = self.cursor.get(ev.chat_id)
                if last is not None:
                    if ev.seq <= last:
                        continue
                    if ev.seq > last + 1:  # a bus message went missing or raced: read what lies between
                        last = await self.send_backlog(ev.chat_id, last, ev.seq - 1)
                self.cursor[ev.chat_id] = ev.seq
            await self.send_text(ev.frame)
            self.state.hub.delivered += 1

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
                await self._bad_frame(ErrorCode.PAYLOAD_TOO_LARGE, f"frame larger than {MAX_FRAME_BYTES} bytes")
                continue
            await self.handle_frame(raw)
            if self.close_requested.is_set():
                return

    async def _bad_frame(self, code: str, message: str, req_id: str | None = None,
                         details: dict[str, Any] | None = None) -> None:
        self.bad_frames += 1
        await self.send_text(error_frame(code, message, req_id, details))
        if self.bad_frames > self.state.settings.ws_max_bad_frames:
            self.request_close(CloseCode.BAD_FRAMES, "too many invalid frames")

    async def handle_frame(self, raw: str) -> None:
        from server.realtime import commands

        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            await self._bad_frame(ErrorCode.MALFORMED_JSON, "frame is not valid JSON")
            return
        req_id = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
        try:
            cmd = client_command_adapter.validate_python(obj)
        except ValidationError as exc:
            errors = [{"loc": [str(p) for p in e.get("loc", ())], "type": e.get("type"), "msg": e.get("msg")}
                      for e in exc.errors()[:10]]
            unknown = isinstance(obj, dict) and any(e.get("type") == "union_tag_invalid" for e in exc.errors())
            await self._bad_frame(ErrorCode.BAD_REQUEST if unknown else ErrorCode.VALIDATION_ERROR,
                                  "unknown op" if unknown else "invalid command", req_id[:64] if req_id else None,
                                  {"errors": errors})
            return
        try:
            await self.state.ws_limiter.hit(self.state.settings.rate_ws_commands, "ws", self.session_id)
        except ApiError as exc:
            await self._bad_frame(exc.code, exc.message, cmd.id, exc.details)
            return
        try:
            reply = await commands.run(self, cmd)
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
            frame = json.dumps({"type": "session.revoked", "reason": self.close_reason})
        try:
            async with asyncio.timeout(1.0):
                if frame:
                    await self.ws.send_text(frame)
                await self.ws.close(code=self.close_code, reason=self.close_reason[:120])
        except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
            pass  # the peer is gone or not reading; the server drops the transport
