"""The composer's half of the chat screen: what is typed (messages, edits, replies, slash commands) and the
outbox that sends it.

Sends go through an outbox: each keeps its transaction id, so retrying one that the server already has
(offline, then reconnected) never duplicates it. Slash commands that concern the whole app (/invite,
/leave, /verify, /call) are posted as messages for the app.
"""

import time
import uuid
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.message import Message
from textual.screen import Screen
from textual.widgets import ListView, Static

from melo_protocol.client import events as ev
from melo_protocol.client.errors import MeloError, ServerUnreachable
from melo_protocol.client.messenger import Messenger
from melo_protocol.timetext import human_duration, parse_when, split_when
from melo_tui.sanitize import clean_line
from melo_tui.screens.info import InfoScreen
from melo_tui.slash import COMMANDS, parse, timer_seconds, unescape
from melo_tui.widgets.chats.chat_list import ChatList
from melo_tui.widgets.conversation.composer import Composer
from melo_tui.widgets.conversation.message_view import MessageView
from melo_tui.workers import report, ui_work

TYPING_EVERY_S = 4.0


@dataclass
class PendingSend:
    txn_id: str
    chat_id: int
    text: str
    reply_to: int | None = None
    emote: bool = False


class ComposingScreen(Screen[None]):
    """The base of ``ChatScreen``: composing and sending. The chat screen provides the open chat, the
    messenger, and what follows a sent message (``_after_message``, ``load_chats``)."""

    messenger: Messenger
    chat_id: int | None

    def __init__(self) -> None:
        super().__init__()
        self.outbox: list[PendingSend] = []
        self.editing: ev.Message | None = None
        self.replying: ev.Message | None = None
        self._last_typing_sent = 0.0

    def _after_message(self, message: ev.Message, *, own: bool) -> None:
        raise NotImplementedError

    def load_chats(self) -> object:
        raise NotImplementedError

    @dataclass
    class InviteWanted(Message):
        """Add ``username`` to the chat, or (None) make an invite code for it."""

        chat_id: int
        username: str | None

    @dataclass
    class LeaveWanted(Message):
        chat_id: int

    @dataclass
    class VerifyWanted(Message):
        """Compare safety numbers with ``username`` ("" when there is nobody to ask about)."""

        username: str

    @dataclass
    class CallWanted(Message):
        username: str
        chat_id: int

    def _show_mode(self) -> None:
        mode = self.query_one("#composer-mode", Static)
        if self.editing is not None:
            mode.update(Text("editing your message — Enter saves, Escape cancels", style="yellow"))
        elif self.replying is not None:
            quoted = clean_line(self.replying.text or "", 60)
            mode.update(
                Text(f"replying to {clean_line(self.replying.sender, 32)}: {quoted} — Escape cancels", style="cyan")
            )
        else:
            mode.update("")

    @on(Composer.Cancelled)
    def _cancelled(self, event: Composer.Cancelled) -> None:
        if self.editing is not None or self.replying is not None:
            self.editing = self.replying = None
            self.query_one(Composer).clear()
            self._show_mode()
        else:
            self.query_one(ListView).focus()

    @on(Composer.EditLastWanted)
    def _edit_last(self, event: Composer.EditLastWanted) -> None:
        last = self.query_one(MessageView).last_own()
        if last is None:
            return
        self.editing = last
        composer = self.query_one(Composer)
        composer.load_text(last.text or "")
        composer.move_cursor(composer.document.end)
        self._show_mode()

    @on(Composer.Changed)
    def _changed(self, event: Composer.Changed) -> None:
        if self.chat_id is None or not event.text_area.text:
            return
        now = time.monotonic()
        if now - self._last_typing_sent > TYPING_EVERY_S:
            self._last_typing_sent = now
            self.send_typing(self.chat_id)

    @ui_work(group="typing")
    async def send_typing(self, chat_id: int) -> None:
        try:
            await self.messenger.typing(chat_id, True)
        except MeloError:
            pass  # typing is best effort

    @on(Composer.Submitted)
    async def _submitted(self, event: Composer.Submitted) -> None:
        if self.chat_id is None:
            self.notify("Open a chat first.", severity="warning")
            return
        self._last_typing_sent = 0.0
        text = event.text.rstrip("\n")
        if self.editing is not None:
            target, self.editing = self.editing, None
            self._show_mode()
            self.run_action_worker("edit", target.id, text)
            return
        command = parse(text)
        if command is None:
            reply_to = self.replying.id if self.replying is not None else None
            self.replying = None
            self._show_mode()
            await self.queue_send(self.chat_id, unescape(text), reply_to=reply_to)
            return
        await self.run_command(command.name, command.args)

    async def queue_send(self, chat_id: int, text: str, *, reply_to: int | None = None, emote: bool = False) -> None:
        self.outbox.append(PendingSend(uuid.uuid4().hex, chat_id, text, reply_to, emote))
        self.flush_outbox()

    @ui_work(exclusive=True, group="outbox")
    async def flush_outbox(self) -> None:
        view = self.query_one(MessageView)
        while self.outbox:
            item = self.outbox[0]
            try:
                message = await self.messenger.send_text(
                    item.chat_id, item.text, reply_to=item.reply_to, txn_id=item.txn_id, emote=item.emote
                )
            except ServerUnreachable:
                if not any(p.txn_id == item.txn_id for p in view.query("PendingItem")):  # type: ignore[attr-defined]
                    if item.chat_id == view.chat_id:
                        await view.add_pending(item.txn_id, item.text)
                    self.notify("Offline: the message will be sent when the server is back.", severity="warning")
                return
            except MeloError as exc:  # refused: the next ones may still go
                self.outbox.pop(0)
                await view.remove_pending(item.txn_id)
                report(self, "Sending", exc)
                continue
            await view.remove_pending(item.txn_id)  # first: an empty outbox means nothing shows as pending
            self.outbox.pop(0)
            await view.add(message)
            self._after_message(message, own=True)

    def _retry_outbox(self) -> None:
        if self.outbox:
            self.flush_outbox()

    async def run_command(self, name: str, args: str) -> None:
        view = self.query_one(MessageView)
        assert self.chat_id is not None
        if name == "me":
            if args:
                await self.queue_send(self.chat_id, args, emote=True)
        elif name == "reply":
            target = view.last_message(from_others=True) or view.last_message()
            if target is None:
                self.notify("Nothing to reply to.", severity="warning")
            elif args:
                await self.queue_send(self.chat_id, args, reply_to=target.id)
            else:
                self.replying = target
                self._show_mode()
        elif name in ("edit", "delete"):
            target = view.last_own()
            if target is None:
                self.notify("You have no message here to change.", severity="warning")
            elif name == "edit" and not args:
                self._edit_last(Composer.EditLastWanted())
            else:
                self.run_action_worker(name, target.id, args)
        elif name in ("react", "pin"):
            target = view.last_message()
            if target is None:
                self.notify("No message to act on.", severity="warning")
            elif name == "react" and not args:
                self.notify("Usage: /react EMOJI", severity="warning")
            else:
                self.run_action_worker(name, target.id, args)
        elif name == "invite":
            self.post_message(self.InviteWanted(self.chat_id, args or None))
        elif name == "leave":
            self.post_message(self.LeaveWanted(self.chat_id))
        elif name == "verify":
            self.post_message(self.VerifyWanted(args or self._peer() or ""))
        elif name == "call":
            peer = self._peer()
            if peer is None:
                self.notify("/call works in a direct chat: open the DM of the person to call.", severity="error")
            else:
                self.post_message(self.CallWanted(peer, self.chat_id))
        elif name == "timer":
            self.change_timer(self.chat_id, args)
        elif name == "schedule":
            self.schedule(self.chat_id, args)
        else:
            self.notify(
                f"Unknown command /{clean_line(name, 20)}. Known: " + " ".join("/" + c for c in COMMANDS),
                severity="warning",
            )

    @ui_work(group="timer", what="/timer")
    async def change_timer(self, chat_id: int, args: str) -> None:
        if not args:
            self.notify("Usage: /timer DURATION|off (for example /timer 1h)", severity="warning")
            return
        try:
            seconds = timer_seconds(args)
        except ValueError as exc:
            self.notify(clean_line(str(exc), 200), severity="warning")
            return
        await self.messenger.client.set_timer(chat_id, seconds)
        self.notify(
            f"Messages disappear {human_duration(seconds)} after sending."
            if seconds
            else "Disappearing messages are off."
        )
        self.load_chats()

    @ui_work(group="schedule", what="/schedule")
    async def schedule(self, chat_id: int, args: str) -> None:
        """/schedule WHEN TEXT sends later; /schedule (or list) shows this chat's; /schedule cancel ID."""
        head = args.split(maxsplit=1)[0].lower() if args else "list"
        if head == "list":
            await self._show_scheduled(chat_id)
        elif head == "cancel":
            target = args.split(maxsplit=1)[1].strip().lstrip("#") if len(args.split()) > 1 else ""
            if not target.isdigit():
                self.notify("Usage: /schedule cancel ID (the ids are in /schedule)", severity="warning")
                return
            await self.messenger.client.cancel_scheduled(int(target))
            self.notify(f"Scheduled message {target} cancelled.")
        else:
            when, text = split_when(args)
            try:
                send_at = parse_when(when)
            except ValueError as exc:
                self.notify(clean_line(str(exc), 300), severity="warning")
                return
            if not text:
                self.notify("Usage: /schedule WHEN TEXT (for example /schedule +10m hello)", severity="warning")
                return
            row = await self.messenger.schedule_text(chat_id, text, send_at)
            local = row.send_at.astimezone().strftime("%Y-%m-%d %H:%M")
            self.notify(f"Scheduled message {row.id} for {local}. /schedule cancel {row.id} to cancel.")

    async def _show_scheduled(self, chat_id: int) -> None:
        rows = [r for r in await self.messenger.list_scheduled() if r.chat_id == chat_id]
        body = Text()
        if not rows:
            body.append("Nothing scheduled in this chat. /schedule WHEN TEXT schedules a message.", style="dim")
        for row in sorted(rows, key=lambda r: r.send_at):
            body.append(f"#{row.id}  ", style="bold")
            body.append(row.send_at.astimezone().strftime("%Y-%m-%d %H:%M") + "  ", style="cyan")
            if row.e2e is not None:
                body.append("🔒 ", style="green")
            if row.text is not None:
                body.append(clean_line(row.text, 100))
            else:
                body.append("end-to-end encrypted; its text is not on this device", style="dim")
            body.append("\n")
        self.app.push_screen(InfoScreen("Scheduled messages", body))

    def _peer(self) -> str | None:
        entry = self.query_one(ChatList).entries.get(self.chat_id or 0)
        return entry.chat.peer.username if entry and entry.chat.peer else None

    @ui_work(group="actions", what=lambda action, message_id, args: f"/{action}")
    async def run_action_worker(self, action: str, message_id: int, args: str) -> None:
        assert self.chat_id is not None
        chat_id, view = self.chat_id, self.query_one(MessageView)
        if action == "edit":
            view.replace_message(await self.messenger.edit_text(chat_id, message_id, args))
        elif action == "delete":
            await self.messenger.delete(chat_id, message_id)
            view.mark_deleted(message_id)
        elif action == "react":
            await self.messenger.react(chat_id, message_id, args)
        elif action == "pin":
            await self.messenger.pin(chat_id, message_id, unpin=args.lower() in ("off", "un", "unpin"))
