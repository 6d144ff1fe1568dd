"""WebSocket commands: the same services as the REST routes, answered by ``ack`` or ``error``."""

from typing import Any

from melo_protocol.wire.chats import MessageEdit, MessageSend
from melo_protocol.wire.realtime import (
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
from server.realtime.frames import ack_frame, pong_frame, typing_frame


async def run(conn: Connection, cmd: Any) -> str | None:
    state = conn.state
    if isinstance(cmd, PingCmd):
        return pong_frame(cmd.id)
    async with state.sessions() as db:
        caller: Caller = await caller_for_socket(state, db, conn.user_id, conn.session_id, conn.device_id)
        if isinstance(cmd, SendCmd):
            body = MessageSend(txn_id=cmd.txn_id, text=cmd.text, e2e=cmd.e2e, reply_to=cmd.reply_to,
                               recipient_devices=cmd.recipient_devices)
            out = await messages.send(state, db, caller, cmd.chat_id, body)
            return ack_frame(cmd.id, out.model_dump(mode="json"))
        if isinstance(cmd, EditCmd):
            out = await messages.edit(state, db, caller, cmd.chat_id, cmd.message_id,
                                      MessageEdit(text=cmd.text, e2e=cmd.e2e,
                                                  recipient_devices=cmd.recipient_devices))
            return ack_frame(cmd.id, out.model_dump(mode="json"))
        if isinstance(cmd, DeleteCmd):
            await messages.delete_message(state, db, caller, cmd.chat_id, cmd.message_id)
            return ack_frame(cmd.id)
        if isinstance(cmd, ReactCmd):
            await messages.react(state, db, caller, cmd.chat_id, cmd.message_id, cmd.emoji, remove=cmd.remove)
            return ack_frame(cmd.id)
        if isinstance(cmd, ReadCmd | ReceivedCmd):
            await messages.mark(state, db, caller, cmd.chat_id, cmd.seq, read=isinstance(cmd, ReadCmd))
            return ack_frame(cmd.id)
        if isinstance(cmd, ToDeviceAckCmd):
            from server.keys.service import acknowledge

            removed = await acknowledge(db, conn.device_id, cmd.up_to, only=conn.to_device_sent)
            return ack_frame(cmd.id, {"removed": removed})
        if isinstance(cmd, TypingCmd):
            await load_member(db, cmd.chat_id, conn.user_id)
            frame = typing_frame(cmd.chat_id, conn.username, cmd.typing)
            await state.bus.publish(BusEvent(kind="typing", chat_id=cmd.chat_id, frame=frame,
                                             exclude_user=conn.user_id))
            return ack_frame(cmd.id) if cmd.id else None
    raise AssertionError(f"unhandled command {cmd!r}")
