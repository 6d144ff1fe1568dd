"""``LiveStream``: the WebSocket half of the SDK — auth, resume from a cursor, heartbeats, commands
answered by ack/error, and reconnection with exponential backoff and jitter.

Frames come out of ``frames()`` in the order the server sent them. The cursor (chat id → last seq)
advances as frames are handed out, and is saved through ``cursor_store`` so that a restarted client
resumes exactly where it stopped: no loss, no duplicates.
"""

import asyncio
import contextlib
import json
import logging
import random
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import websockets
from pydantic import TypeAdapter, ValidationError
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from melo_protocol.client.errors import (
    MeloError,
    NotAuthenticated,
    ServerUnreachable,
    SessionRevoked,
    StreamClosed,
    error_from_code,
)
from melo_protocol.client.rest import MeloClient
from melo_protocol.wire.bounds import Id, Seq
from melo_protocol.wire.realtime import CloseCode

log = logging.getLogger("melo.sdk.stream")

RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 30.0
COMMAND_TIMEOUT_S = 30.0
QUEUE_SIZE = 10_000
_CURSOR: TypeAdapter[dict[int, int]] = TypeAdapter(dict[Id, Seq])


class CursorFile:
    """Keeps the resume cursor in a small JSON file (written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, int] | None:
        """The saved cursor; None (resume from now) when it is missing, unreadable or not a cursor the
        server accepts (it refuses the whole auth frame over one bad entry, see ``AuthCmd.cursor``)."""
        try:
            cursor = _CURSOR.validate_json(self.path.read_bytes())
        except OSError:
            return None
        except ValidationError:
            log.warning("ignoring the saved cursor in %s: it is not a cursor (chat id → seq)", self.path)
            return None
        return {str(k): v for k, v in cursor.items()}

    def save(self, cursor: dict[str, int]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cursor))
        tmp.replace(self.path)


class LiveStream:
    def __init__(
        self,
        client: MeloClient,
        *,
        cursor: dict[str, int] | None = None,
        cursor_store: CursorFile | None = None,
        on_state: Callable[[str], None] | None = None,
        reconnect: bool = True,
    ) -> None:
        self.client = client
        self.cursor_store = cursor_store
        stored = cursor_store.load() if cursor_store else None
        # None: start from now (no backlog); a dict: resume after those positions
        self.cursor: dict[str, int] | None = cursor if cursor is not None else stored
        self.on_state = on_state
        self.reconnect = reconnect
        self.state = "idle"
        self.ready: dict[str, Any] | None = None
        self._frames: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue(QUEUE_SIZE)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ws: Any = None
        self._connected = asyncio.Event()
        self._caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._dirty = 0

    # -- lifecycle -------------------------------------------------------------------------------
    async def __aenter__(self) -> "LiveStream":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self, wait: bool = True, timeout: float = 30.0) -> None:
        self._task = asyncio.create_task(self._run(), name="melo-stream")
        if wait:
            await self.wait_caught_up(timeout)

    async def wait_caught_up(self, timeout: float = 30.0) -> None:
        """Wait until the backlog is delivered (or the stream failed: its error is raised)."""
        waiter = asyncio.create_task(self._caught_up.wait())
        assert self._task is not None
        done, _ = await asyncio.wait({waiter, self._task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            if self._task in done:
                self._task.result()
                raise StreamClosed("the stream stopped")
            raise ServerUnreachable("timed out waiting for the live stream")

    async def close(self) -> None:
        self._closing = True
        self._set_state("closed")
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._save_cursor(force=True)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(StreamClosed("stream closed"))

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                self.on_state(state)

    # -- consuming -------------------------------------------------------------------------------
    async def frames(self) -> AsyncIterator[dict[str, Any]]:
        """Every server frame except command answers; raises the error that ended the stream."""
        while True:
            item = await self._frames.get()
            if isinstance(item, BaseException):
                raise item
            self._advance(item)
            yield item

    async def next_frame(self, timeout: float | None = None) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            item = await self._frames.get()
        if isinstance(item, BaseException):
            raise item
        self._advance(item)
        return item

    def _advance(self, frame: dict[str, Any]) -> None:
        chat_id, seq = frame.get("chat_id"), frame.get("seq")
        if isinstance(chat_id, int) and isinstance(seq, int):
            if self.cursor is None:
                self.cursor = {}
            key = str(chat_id)
            if seq > self.cursor.get(key, -1):
                self.cursor[key] = seq
                self._dirty += 1
                self._save_cursor()

    def _save_cursor(self, force: bool = False) -> None:
        if self.cursor_store is not None and self.cursor is not None and (force or self._dirty):
            self.cursor_store.save(self.cursor)
            self._dirty = 0

    # -- commands --------------------------------------------------------------------------------
    async def command(self, op: str, timeout: float = COMMAND_TIMEOUT_S, **fields: Any) -> dict[str, Any]:
        """Send a command and wait for its ack (``result``); an error frame raises its MeloError.

        A command whose connection drops before the answer is sent again after reconnecting, with
        the same request: sends carry a txn_id, so a repeat never duplicates a message.
        """
        req_id = uuid.uuid4().hex[:16]
        payload = json.dumps({"op": op, "id": req_id, **fields}, ensure_ascii=False)
        async with asyncio.timeout(timeout):
            while True:
                await self._connected.wait()
                fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
                self._pending[req_id] = fut
                try:
                    await self._ws.send(payload)
                    frame = await fut
                except (ConnectionClosed, _Reconnecting):
                    continue
                finally:
                    self._pending.pop(req_id, None)
                if frame["type"] == "error":
                    err = frame.get("error") or {}
                    raise error_from_code(err.get("code", "error"), err.get("message", ""), err.get("details"))
                return frame

    # -- the connection loop ---------------------------------------------------------------------
    async def _run(self) -> None:
        attempt = 0
        refreshed = False
        while not self._closing:
            self._set_state("connecting" if attempt == 0 else "reconnecting")
            try:
                token = await self.client.access_token()
                async with websockets.connect(self.client.ws_url, max_size=4 * 1024 * 1024,
                                              open_timeout=15, ping_interval=None) as ws:
                    self._ws = ws
                    await ws.send(json.dumps({"op": "auth", "token": token, "cursor": self.cursor}))
                    await self._session(ws)
                    attempt = 0
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                if code == CloseCode.SESSION_REVOKED:
                    await self._fail(await self._why_revoked())
                    return
                if code == CloseCode.AUTH_FAILED:
                    if refreshed:
                        await self._fail(NotAuthenticated(401, "unauthenticated", "the server refused our token"))
                        return
                    refreshed = True
                    with contextlib.suppress(MeloError):
                        await self.client.force_refresh(token)
                    continue
                if code == CloseCode.BAD_FRAMES:
                    await self._fail(MeloError("the server closed the stream: too many invalid frames"))
                    return
            except (OSError, InvalidStatus, TimeoutError, EOFError) as exc:
                log.info("stream connection failed: %s", type(exc).__name__)
            except InvalidURI as exc:
                await self._fail(ServerUnreachable(str(exc)))
                return
            except SessionRevoked as exc:
                await self._fail(exc)
                return
            except ServerUnreachable:
                pass
            finally:
                self._ws = None
                self._connected.clear()
                for fut in self._pending.values():
                    if not fut.done():
                        fut.set_exception(_Reconnecting())
            if self._closing or not self.reconnect:
                if not self._closing:
                    await self._fail(ServerUnreachable("the live stream was disconnected"))
                return
            attempt += 1
            delay = min(RECONNECT_MAX_S, RECONNECT_MIN_S * 2 ** min(attempt, 10))
            self._set_state("reconnecting")
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # backoff with jitter, not synchronisation

    async def _why_revoked(self) -> SessionRevoked:
        """Why the server closed our session: one REST call names a ban or deactivation (the socket's
        close says only "revoked"), so the user is not told to log in again to a banned account."""
        try:
            await self.client.whoami()
        except SessionRevoked as exc:
            return exc
        except MeloError:
            pass
        return SessionRevoked(401, "session_revoked", "this session was revoked")

    async def _fail(self, exc: BaseException) -> None:
        self._set_state("closed")
        await self._frames.put(exc)

    async def _session(self, ws: Any) -> None:
        heartbeat: asyncio.Task[None] | None = None
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "ready":
                    self.ready = frame
                    heartbeat = asyncio.create_task(self._heartbeat(ws, float(frame.get("heartbeat_s", 25))))
                    continue
                if kind == "caught_up":
                    self._connected.set()
                    self._caught_up.set()
                    self._set_state("connected")
                    if self.cursor is None:
                        # resume from here next time, even when nothing arrives meanwhile
                        self.cursor = {str(k): int(v) for k, v in (frame.get("cursor") or {}).items()}
                        self._save_cursor(force=True)
                    continue
                if kind in ("ack", "error", "pong") and frame.get("id") in self._pending:
                    fut = self._pending[frame["id"]]
                    if not fut.done():
                        fut.set_result(frame)
                    continue
                if kind == "pong":
                    continue
                await self._frames.put(frame)  # blocks when the consumer lags: the server then resyncs us
        finally:
            if heartbeat is not None:
                heartbeat.cancel()

    async def _heartbeat(self, ws: Any, every: float) -> None:
        while True:
            await asyncio.sleep(every)  # a heartbeat period, not synchronisation
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"op": "ping"}))


class _Reconnecting(Exception):
    pass
