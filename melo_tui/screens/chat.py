"""The main screen: chat list, message view, typing indicator and composer.

Network work runs in workers on this screen through the injected Messenger; SDK errors become
notifications. Sends go through an outbox: each keeps its transaction id, so retrying one that the
server already has (offline, then reconnected) never duplicates it.
"""

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, ListView, Static

from melo_protocol.client import events as ev
from melo_protocol.client.errors import MeloError, ServerUnreachable
from melo_protocol.client.messenger import Messenger
from melo_tui.commands_parse import COMMANDS, parse, unescape
from melo_tui.sanitize import clean_line
from melo_tui.widgets.call_bar import CallBar
from melo_tui.widgets.chats.chat_list import ChatList, chat_title
from melo_tui.widgets.conversation.composer import Composer
from melo_tui.widgets.conversation.message_view import MessageView
from melo_tui.widgets.conversation.typing_indicator import TypingIndicator

if TYPE_CHECKING:
    from melo_tui.app import MeloApp

HISTORY_PAGE = 50
TYPING_EVERY_S = 4.0


@dataclass
class PendingSend:
    txn_id: str
    chat_id: int
    text: str
    reply_to: int | None = None
    emote: bool = False


def preview_of(message: ev.Message) -> str:
    if message.status == "deleted":
        return "message deleted"
    if message.status != "ok" or message.text is None:
        return "🔒 encrypted message"
    prefix = f"* {message.sender} " if message.kind == "emote" else f"{message.sender}: "
    return prefix + message.text[:200]


class ChatScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "app.sessions", "Sessions", id="chat.sessions"),
        Binding("ctrl+o", "focus_chats", "Chats", id="chat.focus_chats"),
        Binding("ctrl+r", "reload_chats", "Reload", id="chat.reload"),
    ]

    def __init__(self, messenger: Messenger) -> None:
        super().__init__()
        self.messenger = messenger
        self.chat_id: int | None = None
        self.outbox: list[PendingSend] = []
        self.editing: ev.Message | None = None
        self.replying: ev.Message | None = None
        self.previews: dict[int, str] = {}
        self._last_typing_sent = 0.0
        self.status = ""

    @property
    def melo(self) -> "MeloApp":
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(Text("Melo", style="bold"), id="status-header")
        yield CallBar(id="call-bar")
        with Horizontal(id="main"):
            yield ChatList(id="chat-list")
            with Vertical(id="conversation"):
                yield Static(Text("Choose a chat on the left (Enter), or press Ctrl+P for actions.", style="dim"),
                             id="chat-title")
                yield MessageView(self.messenger.username, self.melo.formatting, id="messages")
                yield TypingIndicator(id="typing")
                yield Static("", id="composer-mode")
                yield Composer(id="composer")
        yield Footer()

    def show_status(self, username: str, state: str) -> None:
        """The header line: who is logged in, and the connection state."""
        self.status = f"{username} · {state}"
        text = Text("Melo", style="bold")
        text.append(f"  {clean_line(username, 64)}", style="cyan")
        text.append(f"  ● {state}", style="green" if state == "connected" else "yellow")
        self.query_one("#status-header", Static).update(text)

    def on_mount(self) -> None:
        self.query_one("#chat-filter", Input).focus()
        self.load_chats()
        self.set_interval(3.0, self._retry_outbox)

    # -- chats ------------------------------------------------------------------------------------------
    @work(exclusive=True, group="chats")
    async def load_chats(self) -> None:
        try:
            chats = await self.messenger.client.list_chats()
        except MeloError as exc:
            self.notify(f"Could not load chats: {exc}", severity="error")
            return
        for chat in chats:
            if chat.id not in self.previews and chat.last_message is not None:
                last = chat.last_message
                self.previews[chat.id] = ("message deleted" if last.deleted else
                                          f"{last.sender}: {last.text}" if last.text else "🔒 encrypted message")
        await self.query_one(ChatList).set_chats(chats, self.previews)

    def action_reload_chats(self) -> None:
        self.load_chats()

    def action_focus_chats(self) -> None:
        self.query_one("#chat-filter", Input).focus()

    @on(ChatList.Opened)
    def _opened(self, event: ChatList.Opened) -> None:
        self.open_chat(event.chat_id)

    @work(exclusive=True, group="open")
    async def open_chat(self, chat_id: int) -> None:
        chats = self.query_one(ChatList)
        entry = chats.entries.get(chat_id)
        self.chat_id = chat_id
        self.editing = self.replying = None
        self._show_mode()
        self.query_one(TypingIndicator).clear()
        title = Text(clean_line(entry.title if entry else f"chat {chat_id}", 80), style="bold")
        if entry is not None:
            title.append(f"  {entry.chat.kind}{' · end-to-end encrypted' if entry.chat.e2e else ''}", style="dim")
        self.query_one("#chat-title", Static).update(title)
        try:
            messages = await self.messenger.history(chat_id, limit=HISTORY_PAGE)
        except MeloError as exc:
            self.notify(f"Could not load messages: {exc}", severity="error")
            return
        view = self.query_one(MessageView)
        await view.show_chat(chat_id, messages, complete=len(messages) < HISTORY_PAGE)
        self.query_one(Composer).focus()
        if messages:  # the list's preview of an E2E chat stays "encrypted" until we have read it here
            self.previews[chat_id] = preview_of(messages[-1])
        chats.update_entry(chat_id, unread=0, preview=self.previews.get(chat_id, ""))
        if messages:
            try:
                members = await self.messenger.client.list_members(chat_id)
                others = [m.read_seq for m in members if m.user.username != self.messenger.username]
                if others:
                    view.receipt(max(others))
                await self.messenger.mark_read(chat_id, messages[-1].seq)
            except MeloError as exc:
                self.notify(f"Could not mark as read: {exc}", severity="warning")

    @on(MessageView.OlderWanted)
    def _older(self, event: MessageView.OlderWanted) -> None:
        self.load_older(event.chat_id, event.before_seq)

    @work(exclusive=True, group="older")
    async def load_older(self, chat_id: int, before_seq: int) -> None:
        view = self.query_one(MessageView)
        try:
            older = await self.messenger.history(chat_id, before=before_seq, limit=HISTORY_PAGE)
        except MeloError as exc:
            view.loading_older = False
            self.notify(f"Could not load older messages: {exc}", severity="error")
            return
        if view.chat_id == chat_id:
            await view.prepend(older, complete=len(older) < HISTORY_PAGE)

    # -- composing --------------------------------------------------------------------------------------
    def _show_mode(self) -> None:
        mode = self.query_one("#composer-mode", Static)
        if self.editing is not None:
            mode.update(Text("editing your message — Enter saves, Escape cancels", style="yellow"))
        elif self.replying is not None:
            quoted = clean_line(self.replying.text or "", 60)
            mode.update(Text(f"replying to {clean_line(self.replying.sender, 32)}: {quoted} — Escape cancels",
                             style="cyan"))
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
        import time

        if self.chat_id is None or not event.text_area.text:
            return
        now = time.monotonic()
        if now - self._last_typing_sent > TYPING_EVERY_S:
            self._last_typing_sent = now
            self.send_typing(self.chat_id)

    @work(group="typing")
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

    @work(exclusive=True, group="outbox")
    async def flush_outbox(self) -> None:
        view = self.query_one(MessageView)
        while self.outbox:
            item = self.outbox[0]
            try:
                message = await self.messenger.send_text(item.chat_id, item.text, reply_to=item.reply_to,
                                                         txn_id=item.txn_id, emote=item.emote)
            except ServerUnreachable:
                if not any(p.txn_id == item.txn_id for p in view.query("PendingItem")):  # type: ignore[attr-defined]
                    if item.chat_id == view.chat_id:
                        await view.add_pending(item.txn_id, item.text)
                    self.notify("Offline: the message will be sent when the server is back.", severity="warning")
                return
            except MeloError as exc:
                self.outbox.pop(0)
                await view.remove_pending(item.txn_id)
                self.notify(f"Not sent: {exc}", severity="error")
                continue
            self.outbox.pop(0)
            await view.remove_pending(item.txn_id)
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
            self.melo.invite(self.chat_id, args or None)
        elif name == "leave":
            self.melo.leave(self.chat_id)
        elif name == "verify":
            self.melo.verify(args or self._peer() or "")
        elif name == "call":
            peer = self._peer()
            if peer is None:
                self.notify("/call works in a direct chat: open the DM of the person to call.", severity="error")
            else:
                self.melo.start_call(peer, self.chat_id)
        else:
            self.notify(f"Unknown command /{clean_line(name, 20)}. Known: "
                        + " ".join("/" + c for c in COMMANDS), severity="warning")

    def _peer(self) -> str | None:
        entry = self.query_one(ChatList).entries.get(self.chat_id or 0)
        return entry.chat.peer.username if entry and entry.chat.peer else None

    @work(group="actions")
    async def run_action_worker(self, action: str, message_id: int, args: str) -> None:
        assert self.chat_id is not None
        chat_id, view = self.chat_id, self.query_one(MessageView)
        try:
            if action == "edit":
                view.replace_message(await self.messenger.edit_text(chat_id, message_id, args))
            elif action == "delete":
                await self.messenger.delete(chat_id, message_id)
                view.mark_deleted(message_id)
            elif action == "react":
                await self.messenger.react(chat_id, message_id, args)
            elif action == "pin":
                await self.messenger.pin(chat_id, message_id, unpin=args.lower() in ("off", "un", "unpin"))
        except MeloError as exc:
            self.notify(f"/{action} failed: {exc}", severity="error")

    # -- live events ------------------------------------------------------------------------------------
    def _after_message(self, message: ev.Message, *, own: bool) -> None:
        chats = self.query_one(ChatList)
        preview = preview_of(message)
        self.previews[message.chat_id] = preview
        entry = chats.entries.get(message.chat_id)
        if entry is None:
            self.load_chats()
            return
        unread = entry.unread if own or message.chat_id == self.chat_id else entry.unread + 1
        chats.update_entry(message.chat_id, preview=preview, unread=unread, last_at=message.created_at)

    async def handle_event(self, event: ev.Event) -> None:
        view = self.query_one(MessageView)
        here = event.chat_id is not None and event.chat_id == self.chat_id
        if isinstance(event, ev.MessageReceived) and event.message is not None:
            message = event.message
            own = message.sender == self.messenger.username
            if here:
                await view.add(message)
                if message.sender != self.messenger.username:
                    self.query_one(TypingIndicator).set_typing(message.sender, False)
                    self.mark_read(message.chat_id, message.seq)
            elif not own:
                self.app.bell()
            self._after_message(message, own=own)
        elif isinstance(event, ev.MessageEdited) and event.message is not None:
            if here:
                view.replace_message(event.message)
            if self.previews.get(event.message.chat_id, "").startswith("🔒"):
                self.previews[event.message.chat_id] = preview_of(event.message)
                self.query_one(ChatList).update_entry(event.message.chat_id, preview=preview_of(event.message))
        elif isinstance(event, ev.MessageDeleted) and here:
            view.mark_deleted(event.message_id)
        elif isinstance(event, ev.ReactionChanged) and here:
            view.change_reaction(event.message_id, event.user, event.emoji, event.added)
        elif isinstance(event, ev.PinChanged) and here:
            view.change_pin(event.message_id, event.pinned)
        elif isinstance(event, ev.ReceiptUpdated) and here and event.user != self.messenger.username:
            view.receipt(event.read_seq)
        elif isinstance(event, ev.Typing) and here and event.user != self.messenger.username:
            self.query_one(TypingIndicator).set_typing(event.user, event.typing, event.expires_in)
        elif isinstance(event, ev.KeyWarning):
            warning = Text(f"⚠ {clean_line(event.user, 64)}'s security key changed "
                           f"({event.reason.replace('_', ' ')}, device {clean_line(event.device_id, 40)}). "
                           "Verify them with /verify before trusting new messages.", style="bold red")
            await view.add_notice(warning)
            self.notify(warning.plain, severity="warning", timeout=10)
        elif isinstance(event, ev.Presence):
            for entry in self.query_one(ChatList).entries.values():
                if entry.chat.peer is not None and entry.chat.peer.username == event.user:
                    self.query_one(ChatList).update_entry(entry.chat.id, online=event.online)
        elif isinstance(event, (ev.ChatChanged, ev.MemberChanged, ev.ResyncRequired)):
            if isinstance(event, ev.MemberChanged) and event.user == self.messenger.username \
                    and event.change in ("left", "removed") and here:
                self.chat_id = None
                view.chat_id = None
            self.load_chats()
        elif isinstance(event, ev.ConnectionState) and event.state == "connected":
            self._retry_outbox()

    @work(group="read")
    async def mark_read(self, chat_id: int, seq: int) -> None:
        try:
            await self.messenger.mark_read(chat_id, seq)
        except MeloError:
            pass  # the next open marks it again

    def chat_title_for(self, chat_id: int) -> str:
        entry = self.query_one(ChatList).entries.get(chat_id)
        return chat_title(entry.chat) if entry else str(chat_id)
