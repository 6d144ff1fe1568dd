"""``/v1/ws``: authenticate, replay what the cursor missed, then live events and commands."""

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from sqlalchemy import or_, select
from starlette.websockets import WebSocketDisconnect

from melo_protocol.wire import INT64_MAX, ErrorCode
from melo_protocol.wire.realtime import AuthCmd, CloseCode
from server.chats.service import users_sharing_chats
from server.core.errors import ApiError
from server.db.models import Chat, ChatMember, User
from server.db.types import utcnow
from server.deps import authenticate
from server.keys.service import pending
from server.realtime import commands
from server.realtime.bus import BusEvent
from server.realtime.connection import Connection
from server.realtime.frames import (
    caught_up_frame,
    error_frame,
    presence_frame,
    ready_frame,
    resync_required_frame,
    to_device_frame,
    validation_details,
)
from server.state import AppState

router = APIRouter()
log = logging.getLogger("melo.ws")


async def _refuse(ws: WebSocket, code: int, err_code: str, message: str,
                  details: dict[str, Any] | None = None) -> None:
    with contextlib.suppress(Exception):
        await ws.send_text(error_frame(err_code, message, details=details))
        await ws.close(code=code, reason=message[:120])


@router.websocket("/v1/ws")
async def websocket_endpoint(ws: WebSocket) -> None:
    state: AppState = ws.app.state.melo
    await ws.accept()
    try:
        first = await asyncio.wait_for(ws.receive(), timeout=state.settings.ws_auth_timeout_s)
    except TimeoutError:
        await _refuse(ws, CloseCode.AUTH_FAILED, ErrorCode.UNAUTHENTICATED, "send an auth frame first")
        return
    except WebSocketDisconnect:
        return
    if first["type"] == "websocket.disconnect":
        return
    try:
        auth = AuthCmd.model_validate_json(first.get("text") or first.get("bytes") or b"")
    except ValidationError as exc:
        if all(e["loc"][:1] == ("cursor",) for e in exc.errors()):
            # A client that resumed from a cursor we ignored would silently miss events: refuse it.
            await _refuse(ws, CloseCode.AUTH_FAILED, ErrorCode.VALIDATION_ERROR,
                          f"the cursor maps chat ids (1 … {INT64_MAX}) to seqs (0 … {INT64_MAX})",
                          validation_details(exc))
        else:
            await _refuse(ws, CloseCode.AUTH_FAILED, ErrorCode.UNAUTHENTICATED,
                          'the first frame must be {"op": "auth", "token": …}')
        return
    try:
        async with state.sessions() as db:
            caller = await authenticate(state, db, auth.token)
    except ApiError as exc:
        code = CloseCode.SESSION_REVOKED if exc.code in (ErrorCode.SESSION_REVOKED, ErrorCode.ACCOUNT_BANNED,
                                                         ErrorCode.ACCOUNT_DEACTIVATED) else CloseCode.AUTH_FAILED
        await _refuse(ws, code, exc.code, exc.message)
        return

    conn = Connection(ws, state, claims=caller.claims, username=caller.user.username, run_command=commands.run)
    try:
        await _serve(state, conn, auth)
    finally:
        conn.finished.set()


async def _serve(state: AppState, conn: Connection, auth: AuthCmd) -> None:
    cursor_in: dict[int, int] = dict(auth.cursor or {})  # chat ids and seqs within range (AuthCmd)
    # Known to the hub by user before memberships are read: a chat joined from here on routes this socket
    # (its member.joined is queued, or the membership read sees it and the backlog has it).
    state.hub.add(conn, [])
    try:
        await conn.send_text(ready_frame(
            user_id=conn.user_id, username=conn.username, session_id=conn.session_id, device_id=conn.device_id,
            heartbeat_s=state.settings.ws_heartbeat_s, idle_timeout_s=state.settings.ws_idle_timeout_s,
        ))
        # The backlog can be long and the peer slow: a revocation or shutdown must not wait for it.
        catch_up = asyncio.create_task(_catch_up(state, conn, auth, cursor_in), name="ws-backlog")
        closing = asyncio.create_task(conn.wait_closed(), name="ws-close")
        try:
            await asyncio.wait([catch_up, closing], return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not catch_up.done():
                catch_up.cancel()
            await asyncio.gather(catch_up, closing, return_exceptions=True)
        if catch_up.cancelled() or conn.close_requested.is_set():
            await conn.close()
            return
        catch_up.result()  # re-raise a failure of the backlog (a disconnect ends the socket)
        tasks = [
            asyncio.create_task(conn.read_loop(), name="ws-read"),
            asyncio.create_task(conn.deliver_loop(), name="ws-deliver"),
            asyncio.create_task(conn.wait_closed(), name="ws-close"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if not t.cancelled() and t.exception() is not None and not isinstance(
                    t.exception(), WebSocketDisconnect
                ):
                    log.warning("socket task failed: %s", type(t.exception()).__name__)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await conn.close()
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        state.hub.remove(conn)
        with contextlib.suppress(Exception):
            await _presence_changed(state, conn, online=False)


async def _catch_up(state: AppState, conn: Connection, auth: AuthCmd, cursor_in: dict[int, int]) -> None:
    """Route the user's chats, send what the cursor missed, then ``caught_up``."""
    async with state.sessions() as db:
        rows = (await db.execute(
            select(ChatMember.chat_id, ChatMember.joined_seq, ChatMember.left_seq)
            .where(ChatMember.user_id == conn.user_id)
            .where(or_(ChatMember.left_seq.is_(None), ChatMember.chat_id.in_(list(cursor_in))))
        )).all()
    # Route first, then read positions: an event racing us is either in the backlog or in the queue,
    # and the per-chat cursor drops the copy that comes twice.
    for r in rows:
        if r.left_seq is None:
            state.hub.route(conn, int(r.chat_id))
    async with state.sessions() as db:
        chats = {c.id: c for c in (await db.scalars(
            select(Chat).where(Chat.id.in_([int(r.chat_id) for r in rows])))).all()}
    resync: list[int] = []
    for r in rows:
        chat = chats.get(int(r.chat_id))
        if chat is None:
            continue
        if auth.cursor is None:
            if r.left_seq is None:
                conn.delivery.start_at(chat.id, chat.last_seq)  # a fresh client starts from now
            continue
        # A cursor past the chat's last event (a client's bug, or a seq from another server) would make
        # every live event look like a duplicate until the chat caught up with it: it means "all of it".
        after = min(cursor_in.get(chat.id, r.joined_seq - 1), chat.last_seq)
        if r.left_seq is not None and after >= r.left_seq:
            continue  # it already saw its removal
        if after < chat.purged_seq:
            resync.append(chat.id)
            conn.delivery.start_at(chat.id, chat.last_seq)
            continue
        await conn.apply(conn.delivery.resume(chat.id, after, r.left_seq))
    if resync:
        await conn.send_text(resync_required_frame(resync))
    # Online before caught_up: a client that saw caught_up counts in presence on every worker (else its
    # other socket closing right then could announce it offline).
    try:
        await _presence_changed(state, conn, online=True)
    except Exception as exc:  # presence is best effort; the stream is not
        log.warning("presence update failed: %s", type(exc).__name__)
    await send_pending_to_device(state, conn)
    await conn.send_text(caught_up_frame(conn.delivery.cursor))


async def send_pending_to_device(state: AppState, conn: Connection) -> None:
    """To-device messages queued for this device (acknowledged ones are gone), oldest first."""
    after = 0
    while True:
        async with state.sessions() as db:
            batch = await pending(db, conn.device_id, after=after, limit=500)
        for item in batch:
            after = item.id
            if item.id not in conn.delivery.to_device_sent:
                await conn.apply(conn.delivery.device_message(item.id, to_device_frame(item)))
        if len(batch) < 500:
            return


async def _presence_changed(state: AppState, conn: Connection, *, online: bool) -> None:
    if online:
        changed = await state.presence.connect(conn.user_id, conn.id)
    else:
        changed = await state.presence.disconnect(conn.user_id, conn.id)
    if not changed:
        return
    now = utcnow()
    async with state.sessions() as db:
        if not online:
            user = await db.get(User, conn.user_id)
            if user is not None:
                user.last_seen_at = now
                await db.commit()
        watchers = await users_sharing_chats(db, conn.user_id)
    frame = presence_frame(conn.username, online, None if online else now)
    await state.bus.publish(BusEvent(kind="presence", frame=frame, user_ids=watchers))


async def maintenance(state: AppState) -> None:
    """Per worker: keep presence entries alive and close sockets of sessions revoked while the bus
    was down (the revocation store is the record; the bus only hurries it)."""
    while True:
        await asyncio.sleep(state.settings.ws_maintenance_s)  # a period, not synchronisation
        conns = state.hub.connections()
        with contextlib.suppress(Exception):
            await state.presence.refresh([(c.user_id, c.id) for c in conns])
        for c in conns:
            with contextlib.suppress(Exception):
                if await state.revocations.is_revoked(c.session_id):
                    c.revoke("session revoked")
