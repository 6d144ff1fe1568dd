"""WebSocket commands: the same services as the REST routes, answered by ``ack`` or ``error``."""

import json
from typing import Any

from melo_protocol.wire.chats import MessageEdit, MessageSend
from melo_protocol.wire.realtime import (
    TYPING_EXPIRES_S,
    DeleteCmd,
    EditCmd,
    PingCmd,
    ReactCmd,
    ReadCmd,
    ReceivedCmd,
    SendCmd,
    ToDeviceAckCmd,
    TypingCmd,
)
from server.chats.service import load_member
from server.deps import Caller
from server.messages import service as messages
from server.realtime.auth import caller_for_socket
from server.realtime.bus import BusEvent
from server.realtime.connection import Connection


def ack(req_id: str | None, result: dict[str, Any] | None = None) -> str:
    return json.dumps({"type": "ack", "id": req_id, "result": result}, default=str, ensure_ascii=False)


async def run(conn: Connection, cmd: Any) -> str | None:
    state = conn.state
    if isinstance(cmd, PingCmd):
        return json.dumps({"type": "pong", "id": cmd.id})
    async with state.sessions() as db:
        caller: Caller = await caller_for_socket(state, db, conn.user_id, conn.session_id, conn.device_id)
        if isinstance(cmd, SendCmd):
            body = MessageSend(txn_id=cmd.txn_id, text=cmd.text, e2e=cmd.e2e, reply_to=cmd.reply_to,
                               recipient_devices=cmd.recipient_devices)
            out = await messages.send(db, caller, cmd.chat_id, body, data_keys=state.data_keys, bus=state.bus,
                                      push=state.push)
            return ack(cmd.id, out.model_dump(mode="json"))
        if isinstance(cmd, EditCmd):
            out = await messages.edit(db, caller, cmd.chat_id, cmd.message_id,
                                      MessageEdit(text=cmd.text, e2e=cmd.e2e,
                                                  recipient_devices=cmd.recipient_devices),
                                      data_keys=state.data_keys, bus=state.bus)
            return ack(cmd.id, out.model_dump(mode="json"))
        if isinstance(cmd, DeleteCmd):
            await messages.delete_message(db, caller, cmd.chat_id, cmd.message_id, bus=state.bus)
            return ack(cmd.id)
        if isinstance(cmd, ReactCmd):
            await messages.react(db, caller, cmd.chat_id, cmd.message_id, cmd.emoji, remove=cmd.remove,
                                 bus=state.bus)
            return ack(cmd.id)
        if isinstance(cmd, ReadCmd | ReceivedCmd):
            await messages.mark(db, caller, cmd.chat_id, cmd.seq, read=isinstance(cmd, ReadCmd), bus=state.bus)
            return ack(cmd.id)
        if isinstance(cmd, ToDeviceAckCmd):
            from server.keys.service import acknowledge

            removed = await acknowledge(db, conn.device_id, cmd.up_to, only=conn.to_device_sent)
            return ack(cmd.id, {"removed": removed})
        if isinstance(cmd, TypingCmd):
            await load_member(db, cmd.chat_id, conn.user_id)
            frame = json.dumps({"type": "typing", "chat_id": cmd.chat_id, "user": conn.username,
                                "typing": cmd.typing, "expires_in": TYPING_EXPIRES_S})
            await state.bus.publish(BusEvent(kind="typing", chat_id=cmd.chat_id, frame=frame,
                                             exclude_user=conn.user_id))
            return ack(cmd.id) if cmd.id else None
    raise AssertionError(f"unhandled command {cmd!r}")
