"""Chats on the REST client: chats, members, invites, messages (raw), pins, scheduled messages, timers.

Messages here are raw: an end-to-end encrypted chat needs the ``Messenger`` on top to encrypt them.
"""

from datetime import datetime
from typing import Any

from melo_protocol.client import api
from melo_protocol.client.transport import RestTransport, build_request
from melo_protocol.wire.calls import MissedCallOut
from melo_protocol.wire.chats import (
    ChatList,
    ChatOut,
    InviteList,
    InviteOut,
    MemberList,
    MemberOut,
    MessageOut,
    MessagePage,
)
from melo_protocol.wire.jobs import ScheduledList, ScheduledOut, TimerOut


class ChatsApi(RestTransport):
    """Your chats and what happens in them."""

    # -- chats -------------------------------------------------------------------------------

    async def create_direct(self, username: str) -> ChatOut:
        return await self._json(build_request(api.create_direct, username), ChatOut)

    async def create_chat(
        self, kind: str, title: str, members: list[str] | None = None, description: str | None = None
    ) -> ChatOut:
        return await self._json(build_request(api.create_chat, kind, title, members, description), ChatOut)

    async def list_chats(self) -> list[ChatOut]:
        return (await self._json(api.list_chats(), ChatList)).chats

    async def get_chat(self, chat_id: int) -> ChatOut:
        return await self._json(api.get_chat(chat_id), ChatOut)

    async def update_chat(
        self,
        chat_id: int,
        title: str | None = None,
        description: str | None = None,
        slow_mode_seconds: int | None = None,
    ) -> ChatOut:
        return await self._json(build_request(api.update_chat, chat_id, title, description, slow_mode_seconds), ChatOut)

    # -- members and invites -----------------------------------------------------------------

    async def list_members(self, chat_id: int) -> list[MemberOut]:
        return (await self._json(api.list_members(chat_id), MemberList)).members

    async def add_member(self, chat_id: int, username: str) -> MemberOut:
        return await self._json(build_request(api.add_member, chat_id, username), MemberOut)

    async def remove_member(self, chat_id: int, username: str) -> None:
        await self._request(api.remove_member(chat_id, username))

    async def change_role(self, chat_id: int, username: str, role: str) -> MemberOut:
        return await self._json(build_request(api.change_role, chat_id, username, role), MemberOut)

    async def leave_chat(self, chat_id: int) -> None:
        await self._request(api.leave_chat(chat_id))

    async def transfer_chat(self, chat_id: int, username: str) -> None:
        await self._request(build_request(api.transfer_chat, chat_id, username))

    async def create_invite(
        self, chat_id: int, expires_in_seconds: int | None = None, max_uses: int | None = None
    ) -> InviteOut:
        return await self._json(build_request(api.create_invite, chat_id, expires_in_seconds, max_uses), InviteOut)

    async def list_invites(self, chat_id: int) -> list[InviteOut]:
        return (await self._json(api.list_invites(chat_id), InviteList)).invites

    async def revoke_invite(self, code: str) -> InviteOut:
        return await self._json(api.revoke_invite(code), InviteOut)

    async def join_invite(self, code: str) -> ChatOut:
        return await self._json(api.join_invite(code), ChatOut)

    # -- messages (raw: E2E chats need the encrypting layer on top) --------------------------

    async def send_raw(
        self,
        chat_id: int,
        txn_id: str,
        text: str | None = None,
        e2e: dict[str, Any] | None = None,
        reply_to: int | None = None,
        recipient_devices: str | None = None,
    ) -> MessageOut:
        """``recipient_devices``: the digest of the devices ``e2e`` was encrypted for (checked by the server)."""
        return await self._json(
            build_request(api.send_message, chat_id, txn_id, text, e2e, reply_to, recipient_devices), MessageOut
        )

    async def history_raw(
        self, chat_id: int, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> MessagePage:
        return await self._json(build_request(api.history, chat_id, before, after, limit), MessagePage)

    async def edit_raw(
        self,
        chat_id: int,
        message_id: int,
        text: str | None = None,
        e2e: dict[str, Any] | None = None,
        recipient_devices: str | None = None,
    ) -> MessageOut:
        return await self._json(
            build_request(api.edit_message, chat_id, message_id, text, e2e, recipient_devices), MessageOut
        )

    async def delete_message(self, chat_id: int, message_id: int) -> None:
        await self._request(api.delete_message(chat_id, message_id))

    async def react(self, chat_id: int, message_id: int, emoji: str, remove: bool = False) -> None:
        await self._request(build_request(api.react, chat_id, message_id, emoji=emoji, remove=remove))

    async def list_pins(self, chat_id: int) -> list[MessageOut]:
        return (await self._json(api.list_pins(chat_id), MessagePage)).messages

    async def pin(self, chat_id: int, message_id: int, unpin: bool = False) -> None:
        await self._request(api.pin(chat_id, message_id, unpin))

    async def mark_read(self, chat_id: int, seq: int) -> None:
        await self._request(build_request(api.mark_read, chat_id, seq))

    async def record_missed_call(self, chat_id: int, call_id: str, at: datetime | None = None) -> MissedCallOut:
        """A ``call.missed`` event in the chat (metadata only); ``at`` defaults to the server's clock."""
        return await self._json(build_request(api.record_missed_call, chat_id, call_id, at), MissedCallOut)

    # -- scheduled messages and timers (raw: E2E chats encrypt with the Messenger) -----------

    async def schedule_raw(
        self,
        chat_id: int,
        txn_id: str,
        send_at: datetime,
        text: str | None = None,
        e2e: dict[str, Any] | None = None,
        reply_to: int | None = None,
    ) -> ScheduledOut:
        """Have the server send this at ``send_at`` (a zoned datetime); E2E chats give an envelope made now."""
        return await self._json(
            build_request(api.schedule_message, chat_id, txn_id, send_at, text, e2e, reply_to), ScheduledOut
        )

    async def list_scheduled(self) -> list[ScheduledOut]:
        return (await self._json(api.list_scheduled(), ScheduledList)).scheduled

    async def cancel_scheduled(self, scheduled_id: int) -> None:
        await self._request(api.cancel_scheduled(scheduled_id))

    async def set_timer(self, chat_id: int, seconds: int | None) -> TimerOut:
        return await self._json(build_request(api.set_timer, chat_id, seconds), TimerOut)
