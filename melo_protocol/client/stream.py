"""``LiveStream``: the WebSocket half of the SDK — auth, resume from a cursor, heartbeats, commands
answered by ack/error, and reconnection with exponential backoff and jitter.

Frames come out of ``frames()`` in the order the server sent them, each parsed into its
``melo_protocol.wire.realtime`` model on arrival (``parse_server_frame``). The cursor (chat id → last
seq) is ``ResumeState``'s: it advances as frames are handed out, and is saved through ``cursor_store``
so that a restarted client resumes exactly where it stopped: no loss, no duplicates.
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
    BadRequest,
    MeloError,
    NotAuthenticated,
    ServerUnreachable,
    SessionRevoked,
    StreamClosed,
    error_from_code,
)
from melo_protocol.client.rest import MeloClient
from melo_protocol.client.resume import ResumeState
from melo_protocol.client.validation import describe_errors
from melo_protocol.wire.bounds import Id, Seq
from melo_protocol.wire.realtime import (
    AckFrame,
    CaughtUpFrame,
    CloseCode,
    ErrorFrame,
    PongFrame,
    ReadyFrame,
    UnknownFrame,
    client_command_adapter,
    parse_server_frame,
)

log = logging.getLogger("melo.sdk.stream")


def encode_command(op: str, **fields: Any) -> str:
    """A command as the JSON of its ``melo_protocol.wire.realtime`` model (the one the server parses it
    with), carrying exactly the fields given. A value the model refuses is ``BadRequest`` here, in the
    user's words, before anything is sent; details name the fields, never their values."""
    try:
        cmd = client_command_adapter.validate_python({"op": op, **fields})
    except ValidationError as exc:
        errors = exc.errors()
        names = sorted({".".join(str(p) for p in e["loc"][1:]) or "command" for e in errors})
        raise BadRequest(422, "validation_error", describe_errors(errors), {"fields": names}) from None
    return str(cmd.model_dump_json(exclude_unset=True))

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
        # cursor None: start from now (no backlog); a dict: resume after those positions
        self._resume = ResumeState(cursor=cursor if cursor is not None else stored)
        self.on_state = on_state
        self.reconnect = reconnect
        self.state = "idle"
        self.ready: ReadyFrame | None = None
        self._frames: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)  # server frames, or the error that ended us
        self._pending: dict[str, asyncio.Future[AckFrame | ErrorFrame | PongFrame]] = {}
        self._ws: Any = None
        self._connected = asyncio.Event()
        self._caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._dirty = 0

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def cursor(self) -> dict[str, int] | None:
        """Chat id → the last seq handed out; None: from now (nothing seen yet)."""
        return self._resume.cursor

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
    async def frames(self) -> AsyncIterator[Any]:
        """Every server frame (a ``ServerFrame`` model, or an ``UnknownFrame``) except command answers;
        raises the error that ended the stream."""
        while True:
            item = await self._frames.get()
            yield self._hand_out(item)

    async def next_frame(self, timeout: float | None = None) -> Any:
        async with asyncio.timeout(timeout):
            item = await self._frames.get()
        return self._hand_out(item)

    def _hand_out(self, item: Any) -> Any:
        if isinstance(item, BaseException):
            raise item
        if self._resume.handed_out(item):
            self._dirty += 1
            self._save_cursor()
        return item

    def _save_cursor(self, force: bool = False) -> None:
        if self.cursor_store is not None and self.cursor is not None and (force or self._dirty):
            self.cursor_store.save(self.cursor)
            self._dirty = 0

    # -- commands --------------------------------------------------------------------------------
    async def command(self, op: str, timeout: float = COMMAND_TIMEOUT_S, **fields: Any) -> AckFrame | PongFrame:
        """Send a command and wait for its ack (``result``); an error frame raises its MeloError.

        A command whose connection drops before the answer is sent again after reconnecting, with
        the same request: sends carry a txn_id, so a repeat never duplicates a message.
        """
        req_id = uuid.uuid4().hex[:16]
        payload = encode_command(op, id=req_id, **fields)
        async with asyncio.timeout(timeout):
            while True:
                await self._connected.wait()
                fut: asyncio.Future[AckFrame | ErrorFrame | PongFrame] = asyncio.get_running_loop().create_future()
                self._pending[req_id] = fut
                try:
                    await self._ws.send(payload)
                    frame = await fut
                except (ConnectionClosed, _Reconnecting):
                    continue
                finally:
                    self._pending.pop(req_id, None)
                if isinstance(frame, ErrorFrame):
                    raise error_from_code(frame.error.code, frame.error.message, frame.error.details)
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
                    await ws.send(encode_command("auth", token=token, cursor=self._resume.connecting()))
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
                self._resume.disconnected()
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
                frame = _parse(raw)
                if frame is None:
                    continue
                if isinstance(frame, ReadyFrame):
                    self.ready = frame
                    heartbeat = asyncio.create_task(self._heartbeat(ws, float(frame.heartbeat_s)))
                    continue
                if isinstance(frame, CaughtUpFrame):
                    self._connected.set()
                    self._caught_up.set()
                    self._set_state("connected")
                    if self._resume.caught_up(frame.cursor):
                        self._save_cursor(force=True)
                    continue
                if isinstance(frame, AckFrame | ErrorFrame | PongFrame) and frame.id in self._pending:
                    fut = self._pending[frame.id]
                    if not fut.done():
                        fut.set_result(frame)
                    continue
                if isinstance(frame, PongFrame):
                    continue
                if not self._resume.received(frame):
                    continue  # a duplicate: sent again after a reconnect while the first copy still waits
                await self._frames.put(frame)  # blocks when the consumer lags: the server then resyncs us
        finally:
            if heartbeat is not None:
                heartbeat.cancel()

    async def _heartbeat(self, ws: Any, every: float) -> None:
        while True:
            await asyncio.sleep(every)  # a heartbeat period, not synchronisation
            with contextlib.suppress(ConnectionClosed):
                await ws.send(encode_command("ping"))


class _Reconnecting(Exception):
    pass


def _parse(raw: str | bytes) -> Any:
    """A server frame as its model; None (logged) for what is not a frame.

    A known frame that breaks its model (a newer server's change) goes on as an ``UnknownFrame``: the
    consumer ignores it, and the cursor still counts it when it names a chat and a seq.
    """
    try:
        obj = json.loads(raw)
    except ValueError:
        log.warning("ignoring a server frame that is not JSON")
        return None
    if not isinstance(obj, dict):
        log.warning("ignoring a server frame that is not a JSON object")
        return None
    try:
        return parse_server_frame(obj)
    except ValidationError as exc:
        log.warning("server frame %r does not match its model: %s", obj.get("type"), exc.errors()[:1])
    try:
        return UnknownFrame.model_validate(obj)
    except ValidationError:
        return None
