"""A backend without a server, for snapshot and Pilot tests of the TUI.

``FakeServer`` holds users, chats, members and (already decrypted) messages in memory; each user's
``FakeMessenger`` reads and writes them like the SDK's ``Messenger`` does, and a test pushes live events
to a user (``FakeServer.push``) or has another user act (``FakeServer.send``…), which pushes the event
the real server would. ``FakeBackend`` is a ``melo_tui.backend.Backend`` whose login, resume and close
open such a messenger instead of the network, so the app under test runs its real code from there on.

Only what the TUI calls is here; the few live end-to-end tests keep the real SDK and server honest.
"""

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from melo_protocol.client import CredentialStore
from melo_protocol.client import events as ev
from melo_protocol.client.errors import (
    Conflict,
    Forbidden,
    InvalidCredentials,
    NotFound,
    NotLoggedIn,
)
from melo_protocol.wire.accounts import SessionOut
from melo_protocol.wire.chats import ChatKind, ChatOut, InviteOut, MemberOut, MessageOut, Role, UserRef
from melo_protocol.wire.jobs import ScheduledOut
from melo_tui.backend import Backend

NOON = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)  # the fake clock starts here, a second a step: never the real one
PASSWORD = "correct horse battery"


@dataclass
class FakeSession:
    id: str
    device_name: str


@dataclass
class FakeUser:
    id: int
    username: str
    password: str
    is_admin: bool = False
    device_id: str = ""
    sessions: list[FakeSession] = field(default_factory=list)
    streams: list[asyncio.Queue[ev.Event]] = field(default_factory=list)


@dataclass
class FakeChat:
    id: int
    kind: ChatKind
    title: str | None
    members: dict[str, Role]  # username → role, in joining order
    e2e: bool = True
    created_at: datetime = NOON
    description: str | None = None
    slow_mode_seconds: int = 0
    message_ttl_seconds: int | None = None
    messages: list[ev.Message] = field(default_factory=list)
    read: dict[str, int] = field(default_factory=dict)  # username → read seq
    invites: list[str] = field(default_factory=list)


class FakeServer:
    """Everything the fake messengers share. Methods named after the SDK calls take the acting user first."""

    def __init__(self) -> None:
        self.users: dict[str, FakeUser] = {}
        self.chats: dict[int, FakeChat] = {}
        self.scheduled: list[ScheduledOut] = []
        self._ids = itertools.count(1)
        self._ticks = itertools.count(1)

    def now(self) -> datetime:
        """The fake clock: a second later at every call, so that what happens later sorts later."""
        return NOON + timedelta(seconds=next(self._ticks))

    # -- set-up and live events ---------------------------------------------------------------------------
    def user(self, username: str, *, admin: bool = False, devices: Iterable[str] = ("melo-tui",)) -> FakeUser:
        """Register ``username`` with sessions on ``devices`` (the first is the app's)."""
        user = FakeUser(next(self._ids), username, PASSWORD, admin, device_id=f"DEV{username.upper()}")
        user.sessions = [FakeSession(f"s{next(self._ids)}", name) for name in devices]
        self.users[username] = user
        return user

    def add_session(self, username: str, device_name: str) -> None:
        """``username`` logs in on another device."""
        self.users[username].sessions.append(FakeSession(f"s{next(self._ids)}", device_name))

    def push(self, username: str, event: ev.Event) -> None:
        """Deliver ``event`` on every live stream of ``username``."""
        for queue in self.users[username].streams:
            queue.put_nowait(event)

    def _to_members(self, chat: FakeChat, event: ev.Event, *, but: str | None = None) -> None:
        for name in chat.members:
            if name != but:
                self.push(name, event)

    def chat_of(self, username: str, chat_id: int) -> FakeChat:
        chat = self.chats.get(chat_id)
        if chat is None or username not in chat.members:
            raise NotFound(404, "chat_not_found", "chat not found")
        return chat

    def create_chat(self, owner: str, kind: str, title: str | None, members: Iterable[str] = ()) -> FakeChat:
        chat_id = next(self._ids)
        roles = {owner: Role.OWNER if kind != "direct" else Role.MEMBER}
        for name in members:
            if name not in self.users:
                raise NotFound(404, "user_not_found", f"no user {name}")
            roles[name] = Role.MEMBER
        chat = FakeChat(chat_id, ChatKind(kind), title, roles, e2e=kind != "channel", created_at=self.now())
        self.chats[chat_id] = chat
        for name in roles:
            self.push(name, ev.MemberChanged(chat_id=chat_id, user=name, change="joined"))
        return chat

    def send(
        self, sender: str, chat_id: int, text: str, *, reply_to: int | None = None, emote: bool = False
    ) -> ev.Message:
        """``sender`` sends ``text``: stored, and a MessageReceived for every other member."""
        chat = self.chat_of(sender, chat_id)
        if chat.kind == ChatKind.CHANNEL and chat.members[sender] == Role.MEMBER:
            raise Forbidden(403, "channel_read_only", "only admins post in this channel")
        seq = len(chat.messages) + 1
        device = self.users[sender].device_id if chat.e2e else None
        message = ev.Message(
            next(self._ids),
            chat_id,
            seq,
            sender,
            device,
            text,
            "ok",
            self.now(),
            reply_to=reply_to,
            kind="emote" if emote else "text",
        )
        chat.messages.append(message)
        chat.read[sender] = seq
        self._to_members(chat, ev.MessageReceived(chat_id=chat_id, seq=seq, message=message), but=sender)
        return message

    # -- views, as the REST API returns them ------------------------------------------------------------------
    def ref(self, username: str) -> UserRef:
        return UserRef(id=self.users[username].id, username=username)

    def chat_out(self, username: str, chat: FakeChat) -> ChatOut:
        last = chat.messages[-1] if chat.messages else None
        peer = next((n for n in chat.members if n != username), None) if chat.kind == ChatKind.DIRECT else None
        return ChatOut(
            id=chat.id,
            kind=chat.kind,
            title=chat.title,
            description=chat.description,
            e2e=chat.e2e,
            slow_mode_seconds=chat.slow_mode_seconds,
            message_ttl_seconds=chat.message_ttl_seconds,
            created_at=chat.created_at,
            role=chat.members[username],
            member_count=len(chat.members),
            last_seq=last.seq if last else 0,
            unread_count=sum(1 for m in chat.messages if m.seq > chat.read.get(username, 0)),
            peer=UserRef(id=self.users[peer].id, username=peer, online=False) if peer else None,
            last_message=None
            if last is None
            else MessageOut(
                id=last.id,
                chat_id=chat.id,
                seq=last.seq,
                sender=last.sender,
                sender_id=self.users[last.sender].id,
                text=None if chat.e2e else last.text,
                e2e={"v": 1} if chat.e2e else None,
                created_at=last.created_at,
            ),
        )

    def members_out(self, chat: FakeChat) -> list[MemberOut]:
        return [
            MemberOut(
                user=self.ref(name),
                role=role,
                joined_at=NOON,
                read_seq=chat.read.get(name, 0),
                delivered_seq=chat.read.get(name, 0),
            )
            for name, role in chat.members.items()
        ]


@dataclass
class FakeStream:
    state: str = "connected"


class FakeClient:
    """The REST calls the TUI makes (``MeloClient``'s names and results), for one logged-in user."""

    def __init__(self, server: FakeServer, username: str) -> None:
        self.server, self.username = server, username

    def _admin(self) -> None:
        if not self.server.users[self.username].is_admin:
            raise Forbidden(403, "admin_required", "admin only")

    def _manager(self, chat: FakeChat) -> None:
        if chat.members[self.username] not in (Role.OWNER, Role.ADMIN) and chat.kind != ChatKind.DIRECT:
            raise Forbidden(403, "chat_admin_required", "owners and admins only")

    async def list_chats(self) -> list[ChatOut]:
        mine = [c for c in self.server.chats.values() if self.username in c.members]
        return [self.server.chat_out(self.username, c) for c in sorted(mine, key=lambda c: -c.id)]

    async def get_chat(self, chat_id: int) -> ChatOut:
        return self.server.chat_out(self.username, self.server.chat_of(self.username, chat_id))

    async def list_members(self, chat_id: int) -> list[MemberOut]:
        return self.server.members_out(self.server.chat_of(self.username, chat_id))

    async def create_direct(self, username: str) -> ChatOut:
        chat = self.server.create_chat(self.username, "direct", None, [username])
        return await self.get_chat(chat.id)

    async def create_chat(self, kind: str, title: str, members: list[str] | None = None) -> ChatOut:
        chat = self.server.create_chat(self.username, kind, title, members or [])
        return await self.get_chat(chat.id)

    async def create_invite(self, chat_id: int) -> InviteOut:
        chat = self.server.chat_of(self.username, chat_id)
        self._manager(chat)
        chat.invites.append(code := f"INVITE{chat_id}X{len(chat.invites)}")
        return InviteOut(code=code, chat_id=chat_id, created_at=NOON, uses=0, revoked=False)

    async def list_invites(self, chat_id: int) -> list[InviteOut]:
        chat = self.server.chat_of(self.username, chat_id)
        return [InviteOut(code=c, chat_id=chat_id, created_at=NOON, uses=0, revoked=False) for c in chat.invites]

    async def join_invite(self, code: str) -> ChatOut:
        chat = next((c for c in self.server.chats.values() if code in c.invites), None)
        if chat is None:
            raise NotFound(404, "invite_invalid", "no such invite")
        if self.username in chat.members:
            raise Conflict(409, "already_member", "already a member")
        chat.members[self.username] = Role.MEMBER
        self.server._to_members(chat, ev.MemberChanged(chat_id=chat.id, user=self.username, change="joined"))
        return await self.get_chat(chat.id)

    async def add_member(self, chat_id: int, username: str) -> None:
        chat = self.server.chat_of(self.username, chat_id)
        self._manager(chat)
        chat.members[username] = Role.MEMBER
        self.server._to_members(chat, ev.MemberChanged(chat_id=chat_id, user=username, change="joined"))

    async def leave_chat(self, chat_id: int) -> None:
        chat = self.server.chat_of(self.username, chat_id)
        self.server._to_members(chat, ev.MemberChanged(chat_id=chat_id, user=self.username, change="left"))
        del chat.members[self.username]

    async def set_timer(self, chat_id: int, seconds: int | None) -> None:
        chat = self.server.chat_of(self.username, chat_id)
        self._manager(chat)
        chat.message_ttl_seconds = seconds
        data = {"message_ttl_seconds": seconds, "by": self.username}
        self.server._to_members(chat, ev.ChatChanged(chat_id=chat_id, change="updated", data=data))

    async def update_chat(self, chat_id: int, **changes: Any) -> ChatOut:
        chat = self.server.chat_of(self.username, chat_id)
        self._manager(chat)
        for key, value in changes.items():
            if value is not None:
                setattr(chat, key, value)
        self.server._to_members(chat, ev.ChatChanged(chat_id=chat_id, change="updated", data=dict(changes)))
        return await self.get_chat(chat_id)

    async def change_role(self, chat_id: int, username: str, role: str) -> None:
        chat = self.server.chat_of(self.username, chat_id)
        if chat.members[self.username] != Role.OWNER:
            raise Forbidden(403, "chat_admin_required", "only the owner changes roles")
        chat.members[username] = Role(role)
        self.server._to_members(
            chat, ev.MemberChanged(chat_id=chat_id, change="role_changed", user=username, role=role, by=self.username)
        )

    async def remove_member(self, chat_id: int, username: str) -> None:
        chat = self.server.chat_of(self.username, chat_id)
        self._manager(chat)
        if chat.members.get(username) == Role.OWNER:
            raise Forbidden(403, "chat_admin_required", "the owner cannot be removed")
        self.server._to_members(
            chat, ev.MemberChanged(chat_id=chat_id, change="removed", user=username, by=self.username)
        )
        del chat.members[username]

    async def list_sessions(self) -> list[SessionOut]:
        user = self.server.users[self.username]
        return [
            SessionOut(
                id=s.id,
                device_id=f"D{s.id}",
                device_name=s.device_name,
                created_at=NOON,
                last_seen_at=NOON,
                ip="127.0.0.1",
                user_agent="melo-sdk/0.1.0",
                current=i == 0,
            )
            for i, s in enumerate(user.sessions)
        ]

    async def revoke_session(self, session_id: str) -> None:
        user = self.server.users[self.username]
        user.sessions = [s for s in user.sessions if s.id != session_id]

    async def revoke_other_sessions(self) -> int:
        user = self.server.users[self.username]
        n, user.sessions = len(user.sessions) - 1, user.sessions[:1]
        return n

    async def admin_audit(self, limit: int = 100) -> Any:
        self._admin()
        return type("Audit", (), {"entries": []})()

    async def admin_ban(self, username: str, reason: str | None = None) -> None:
        self._admin()

    async def admin_revoke_user_sessions(self, username: str) -> int:
        self._admin()
        return len(self.server.users[username].sessions)

    async def admin_rotate_keys(self, *, jwt: bool = True) -> None:
        self._admin()

    async def cancel_scheduled(self, scheduled_id: int) -> None:
        self.server.scheduled = [s for s in self.server.scheduled if s.id != scheduled_id]


class FakeMessenger:
    """The ``Messenger`` calls the TUI makes, over a ``FakeServer``: messages are plain text already."""

    def __init__(self, server: FakeServer, username: str) -> None:
        self.server, self.username = server, username
        self.client = FakeClient(server, username)
        self.stream = FakeStream()
        self._events: asyncio.Queue[ev.Event] = asyncio.Queue()
        server.users[username].streams.append(self._events)

    async def events(self) -> AsyncIterator[ev.Event]:
        while True:
            yield await self._events.get()

    async def history(self, chat_id: int, *, before: int | None = None, limit: int = 50) -> list[ev.Message]:
        messages = [m for m in self.server.chat_of(self.username, chat_id).messages if before is None or m.seq < before]
        return [self._seen(m) for m in messages[-limit:]]

    def _seen(self, message: ev.Message) -> ev.Message:
        """As this user's device shows it: its own messages are from a verified device."""
        if message.sender != self.username:
            return message
        return ev.Message(**{**message.__dict__, "verified": True})

    async def send_text(
        self, chat_id: int, text: str, *, reply_to: int | None = None, txn_id: str | None = None, emote: bool = False
    ) -> ev.Message:
        return self._seen(self.server.send(self.username, chat_id, text, reply_to=reply_to, emote=emote))

    def _message(self, chat_id: int, message_id: int) -> ev.Message:
        found = next((m for m in self.server.chat_of(self.username, chat_id).messages if m.id == message_id), None)
        if found is None:
            raise NotFound(404, "message_not_found", "message not found")
        return found

    async def edit_text(self, chat_id: int, message_id: int, text: str) -> ev.Message:
        message = self._message(chat_id, message_id)
        message.text, message.edited_at = text, self.server.now()
        chat = self.server.chats[chat_id]
        self.server._to_members(chat, ev.MessageEdited(chat_id=chat_id, message=message), but=self.username)
        return self._seen(message)

    async def delete(self, chat_id: int, message_id: int) -> None:
        message = self._message(chat_id, message_id)
        message.status, message.text = "deleted", None
        chat = self.server.chats[chat_id]
        self.server._to_members(
            chat, ev.MessageDeleted(chat_id=chat_id, message_id=message_id, by=self.username), but=self.username
        )

    async def react(self, chat_id: int, message_id: int, emoji: str) -> None:
        message = self._message(chat_id, message_id)
        message.reactions.setdefault(emoji, []).append(self.username)
        self.server._to_members(
            self.server.chats[chat_id],
            ev.ReactionChanged(chat_id=chat_id, message_id=message_id, user=self.username, emoji=emoji, added=True),
        )

    async def pin(self, chat_id: int, message_id: int, *, unpin: bool = False) -> None:
        message = self._message(chat_id, message_id)
        message.pinned = not unpin
        self.server._to_members(
            self.server.chats[chat_id], ev.PinChanged(chat_id=chat_id, message_id=message_id, pinned=not unpin)
        )

    async def pins(self, chat_id: int) -> list[ev.Message]:
        return [m for m in self.server.chat_of(self.username, chat_id).messages if m.pinned]

    async def mark_read(self, chat_id: int, seq: int) -> None:
        chat = self.server.chat_of(self.username, chat_id)
        chat.read[self.username] = max(seq, chat.read.get(self.username, 0))

    async def typing(self, chat_id: int, typing: bool) -> None:
        chat = self.server.chat_of(self.username, chat_id)
        self.server._to_members(chat, ev.Typing(chat_id=chat_id, user=self.username, typing=typing), but=self.username)

    async def safety_number(self, username: str) -> tuple[str, str]:
        if username not in self.server.users:
            raise NotFound(404, "user_not_found", f"no user {username}")
        return "12345 67890 12345 67890 12345 67890", "QR"

    async def list_scheduled(self) -> list[ScheduledOut]:
        return list(self.server.scheduled)

    async def schedule_text(self, chat_id: int, text: str, send_at: datetime) -> ScheduledOut:
        row = ScheduledOut(
            id=next(self.server._ids),
            chat_id=chat_id,
            txn_id="t",
            send_at=send_at,
            created_at=self.server.now(),
            text=text,
        )
        self.server.scheduled.append(row)
        return row

    async def close(self) -> None:
        streams = self.server.users[self.username].streams
        if self._events in streams:
            streams.remove(self._events)


class FakeBackend(Backend):
    """A ``Backend`` whose logins open a ``FakeMessenger``; ``logged_in_as`` makes the profile auto-login."""

    def __init__(
        self,
        server: FakeServer,
        store: CredentialStore,
        *,
        logged_in_as: str | None = None,
        server_url: str | None = "https://melo.example",
    ) -> None:
        super().__init__(store, server_url=server_url)
        self.server = server
        self.logged_in_as = logged_in_as

    def has_stored_login(self) -> bool:
        return self.logged_in_as is not None

    async def resume(self) -> Any:
        if self.logged_in_as is None:
            raise NotLoggedIn("not logged in")
        return self._start(self.logged_in_as)

    async def login(self, server_url: str, username: str, password: str) -> Any:
        user = self.server.users.get(username)
        if user is None or user.password != password:
            raise InvalidCredentials(401, "invalid_credentials", "wrong username or password")
        return self._start(username)

    async def register(self, server_url: str, username: str, password: str, token: str | None) -> Any:
        if username in self.server.users:
            raise Conflict(409, "username_taken", "username taken")
        self.server.user(username).password = password
        return self._start(username)

    def _start(self, username: str) -> Any:
        self.logged_in_as = username
        self.messenger = FakeMessenger(self.server, username)  # type: ignore[assignment]
        self.username, self.is_admin = username, self.server.users[username].is_admin
        return self.messenger

    async def close(self) -> None:
        if self.messenger is not None:
            await self.messenger.close()
            self.messenger = None


def fake_backends(server: FakeServer, home: Path, logins: dict[str, str] | None = None) -> Any:
    """A backend factory (as ``MeloApp`` takes) over ``server``: profile → a ``FakeBackend`` on ``home``;
    ``logins`` says which profiles are logged in, as whom."""

    def make(profile: str) -> Backend:
        return FakeBackend(server, CredentialStore(home, profile), logged_in_as=(logins or {}).get(profile))

    return make
