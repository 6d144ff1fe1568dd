"""WebSocket commands: the same services as the REST routes, answered by ``ack`` or ``error``."""

from typing import Any, Protocol

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
from server.core.jwt_keys import AccessClaims
from server.deps import check_session
from server.keys.service import acknowledge
from server.messages import service as messages
from server.realtime.bus import BusEvent
from server.realtime.delivery import DeliveryState
from server.realtime.frames import ack_frame, pong_frame, typing_frame
from server.state import AppState


class CommandSocket(Protocol):
    """What a command needs of the socket it came on (``Connection`` is one)."""

    state: AppState
    claims: AccessClaims
    user_id: int
    username: str
    device_id: str
    delivery: DeliveryState


async def run(conn: CommandSocket, cmd: Any) -> str | None:
    state = conn.state
    if isinstance(cmd, PingCmd):
        return pong_frame(cmd.id)
    async with state.sessions() as db:
        # the same check as every REST request: revocations and bans apply mid-connection too
        caller = await check_session(state, db, conn.claims)
        if isinstance(cmd, SendCmd):
            body = MessageSend(txn_id=cmd.txn_id, text=cmd.text, e2e=cmd.e2e, reply_to=cmd.reply_to,
                               recipient_devices=cmd.recipient_devices)
            out = await messages.send(db, caller, cmd.chat_id, body, data_keys=state.data_keys, bus=state.bus,
                                      push=state.push)
            return ack_frame(cmd.id, out.model_dump(mode="json"))
        if isinstance(cmd, EditCmd):
            out = await messages.edit(db, caller, cmd.chat_id, cmd.message_id,
                                      MessageEdit(text=cmd.text, e2e=cmd.e2e,
                                                  recipient_devices=cmd.recipient_devices),
                                      data_keys=state.data_keys, bus=state.bus)
            return ack_frame(cmd.id, out.model_dump(mode="json"))
        if isinstance(cmd, DeleteCmd):
            await messages.delete_message(db, caller, cmd.chat_id, cmd.message_id, bus=state.bus)
            return ack_frame(cmd.id)
        if isinstance(cmd, ReactCmd):
            await messages.react(db, caller, cmd.chat_id, cmd.message_id, cmd.emoji, remove=cmd.remove,
                                 bus=state.bus)
            return ack_frame(cmd.id)
        if isinstance(cmd, ReadCmd | ReceivedCmd):
            await messages.mark(db, caller, cmd.chat_id, cmd.seq, read=isinstance(cmd, ReadCmd), bus=state.bus)
            return ack_frame(cmd.id)
        if isinstance(cmd, ToDeviceAckCmd):
            removed = await acknowledge(db, conn.device_id, cmd.up_to, only=conn.delivery.to_device_sent)
            return ack_frame(cmd.id, {"removed": removed})
        if isinstance(cmd, TypingCmd):
            await load_member(db, cmd.chat_id, conn.user_id)
            frame = typing_frame(cmd.chat_id, conn.username, cmd.typing)
            await state.bus.publish(BusEvent(kind="typing", chat_id=cmd.chat_id, frame=frame,
                                             exclude_user=conn.user_id))
            return ack_frame(cmd.id) if cmd.id else None
    raise AssertionError(f"unhandled command {cmd!r}")
