"""Palette and slash-command actions on chats and contacts: new DM, group or channel, join by code,
invite, leave, chat info, sessions, verify (safety numbers or emoji)."""

from typing import Any

from rich.text import Text

from melo_tui.actions.base import AppBase
from melo_tui.messages import ChatJoined, ChatLeft
from melo_tui.sanitize import clean, clean_line
from melo_tui.screens.chat_info import ChatInfoScreen
from melo_tui.screens.info import InfoScreen
from melo_tui.screens.sessions import SessionsScreen
from melo_tui.screens.verify import VerifyScreen
from melo_tui.workers import ui_work


class ChatActions(AppBase):
    def action_new_dm(self) -> None:
        self._prompt("New direct message", [("username", "Username")], lambda v: self.create_dm(v["username"]))

    @ui_work(group="palette", what="New DM")
    async def create_dm(self, username: str) -> None:
        await self._opened_new(await self._messenger().client.create_direct(username))

    def action_new_chat(self, kind: str) -> None:
        self._prompt(
            f"New {kind}",
            [("title", "Title"), ("members", "Members (comma-separated, optional)")],
            lambda v: self.create_chat(kind, v["title"], v["members"]),
        )

    @ui_work(group="palette", what=lambda kind, title, members: f"New {kind}")
    async def create_chat(self, kind: str, title: str, members: str) -> None:
        names = [m.strip() for m in members.split(",") if m.strip()]
        await self._opened_new(await self._messenger().client.create_chat(kind, title, names or None))

    def action_join(self) -> None:
        self._prompt("Join by code", [("code", "Invite code")], lambda v: self.join(v["code"]))

    @ui_work(group="palette", what="Join")
    async def join(self, code: str) -> None:
        await self._opened_new(await self._messenger().client.join_invite(code))

    async def _opened_new(self, chat: Any) -> None:
        screen = self.chat_screen
        if chat is not None and screen is not None:
            screen.post_message(ChatJoined(chat.id))

    def action_invite_code(self) -> None:
        screen = self.chat_screen
        if screen is None or screen.chat_id is None:
            self.notify("Open a chat first.", severity="warning")
            return
        self.invite(screen.chat_id, None)

    def action_chat_info(self) -> None:
        screen = self.chat_screen
        if screen is None or screen.chat_id is None:
            self.notify("Open a chat first.", severity="warning")
            return
        if not isinstance(self.screen, ChatInfoScreen):
            messenger = self._messenger()
            self.push_screen(ChatInfoScreen(messenger.client, screen.chat_id, messenger.username))

    @ui_work(group="palette", what="Invite")
    async def invite(self, chat_id: int, username: str | None) -> None:
        client = self._messenger().client
        if username:
            await client.add_member(chat_id, username)
            self.notify(f"Added {clean_line(username, 64)}.")
            return
        invite = await client.create_invite(chat_id)
        self.push_screen(InfoScreen("Invite code", Text(clean(invite.code), style="bold")))

    @ui_work(group="palette", what="Leave")
    async def leave(self, chat_id: int) -> None:
        await self._messenger().client.leave_chat(chat_id)
        screen = self.chat_screen
        if screen is not None:
            screen.post_message(ChatLeft(chat_id))
        self.notify("You left the chat.")

    def action_sessions(self) -> None:
        if self.backend.messenger is not None and not isinstance(self.screen, SessionsScreen):
            self.push_screen(SessionsScreen(self.backend.messenger.client, self.formatting))

    def action_verify_prompt(self) -> None:
        self._prompt("Verify a contact", [("username", "Username")], lambda v: self.verify(v["username"]))

    @ui_work(group="verify", what=lambda username: f"Verifying {clean_line(username, 64)}")
    async def verify(self, username: str) -> None:
        if not username:
            self.notify("Whom to verify? /verify USERNAME", severity="warning")
            return
        digits, qr = await self._messenger().safety_number(username)
        self.push_screen(
            VerifyScreen(username, digits, qr), lambda want_sas: self.sas.start(username) if want_sas else None
        )

    def action_sas_prompt(self) -> None:
        self._prompt("Verify by emoji (SAS)", [("username", "Username")], lambda v: self.sas.start(v["username"]))
